//! `POST /items/batch`: order, duplicates, unknown ids, limits and cost.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, body, header};

both_backends!(
    batch_keeps_first_occurrence_order_dedupes_and_lists_missing,
    batch_costs_one_lookup_one_lease_pipeline_one_query_and_one_fill,
    batch_limits_and_empty_lists,
);

fn ids_of(batch: &Value) -> Vec<&str> {
    batch["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap())
        .collect()
}

async fn batch_keeps_first_occurrence_order_dedupes_and_lists_missing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.get_item("2").await;
    let response = app.batch(&["3", "x", "2", "1", "3", "x", "y", "2"]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "x-cache-hits"),
        Some("1"),
        "only 2 was cached"
    );
    assert_eq!(
        header(&response, "x-cache-misses"),
        Some("4"),
        "unique ids: 3 x 1 y"
    );
    assert_eq!(header(&response, "x-cache-status"), Some("MISS"));
    let batch = body(response).await;
    assert_eq!(ids_of(&batch), ["3", "2", "1"]);
    assert_eq!(batch["missing"], json!(["x", "y"]));

    let all_cached = app.batch(&["1", "2", "3"]).await;
    assert_eq!(header(&all_cached, "x-cache-status"), Some("HIT"));
    assert_eq!(header(&all_cached, "x-cache-hits"), Some("3"));
    let stats = app.stats().await;
    assert_eq!(stats["hits"], 4);
    assert_eq!(stats["misses"], 5);
}

async fn batch_costs_one_lookup_one_lease_pipeline_one_query_and_one_fill(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for i in 0..100 {
        let id = format!("b{i:03}");
        app.create_ok(&id, &format!("Item {i}")).await;
    }
    // Creates write through: start from nothing cached.
    let flushed = app.invalidate(json!({ "pattern": "item:*" })).await;
    assert_eq!(flushed.status(), StatusCode::OK);
    // 70 of the 100 are cached, 30 are not.
    let cached: Vec<String> = (0..70).map(|i| format!("b{i:03}")).collect();
    let cached: Vec<&str> = cached.iter().map(String::as_str).collect();
    app.batch(&cached).await;
    let wanted: Vec<String> = (0..100).map(|i| format!("b{i:03}")).collect();
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();

    let fetches_before = app.stats().await["upstream_fetches"].as_u64().unwrap();
    let commands_before = app.redis.command_calls();
    let trips_before = app.catalog.status().redis_round_trips;

    let response = app.batch(&wanted).await;
    assert_eq!(header(&response, "x-cache-hits"), Some("70"));
    assert_eq!(header(&response, "x-cache-misses"), Some("30"));
    assert_eq!(ids_of(&body(response).await), wanted);

    let trips = app.catalog.status().redis_round_trips - trips_before;
    let commands_after = app.redis.command_calls();
    let fetches = app.stats().await["upstream_fetches"].as_u64().unwrap() - fetches_before;
    let calls = |name: &str| {
        commands_after.get(name).copied().unwrap_or(0)
            - commands_before.get(name).copied().unwrap_or(0)
    };
    assert_eq!(
        trips, 3,
        "one MGET, one pipeline taking the 30 leases, one script filling the 30"
    );
    assert_eq!(calls("mget"), 1);
    assert_eq!(calls("evalsha"), 1, "all fills in one script call");
    assert_eq!(
        calls("set"),
        60,
        "30 lease SETs (pipelined) and 30 fills (in the script)"
    );
    assert_eq!(fetches, 1, "one source-of-truth query for all 30 misses");
}

async fn batch_limits_and_empty_lists(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let empty = app.batch(&[]).await;
    assert_eq!(empty.status(), StatusCode::OK);
    assert_eq!(body(empty).await, json!({ "items": [], "missing": [] }));

    let max: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    let max: Vec<&str> = max.iter().map(String::as_str).collect();
    let at_limit = app.batch(&max).await;
    assert_eq!(at_limit.status(), StatusCode::OK);
    assert_eq!(
        body(at_limit).await["missing"].as_array().unwrap().len(),
        997
    );

    let over: Vec<String> = (0..1001).map(|i| i.to_string()).collect();
    let over: Vec<&str> = over.iter().map(String::as_str).collect();
    let too_many = app.batch(&over).await;
    assert_eq!(too_many.status(), StatusCode::BAD_REQUEST);
    let error = body(too_many).await;
    assert_eq!(error["error"], "too many ids");
    assert_eq!(error["details"]["max"], 1000);

    let configured = TestApp::builder(backend)
        .config(|c| c.http.batch_max_ids = 2)
        .spawn()
        .await;
    assert_eq!(
        configured.batch(&["1", "2", "3"]).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(configured.batch(&["1", "2"]).await.status(), StatusCode::OK);
}
