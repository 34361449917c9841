//! `/health`, `/livez`, `/readyz` and `/stats` on a healthy instance.

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, body};

both_backends!(
    probes_report_a_healthy_instance,
    stats_count_every_lookup_exactly_once
);

async fn probes_report_a_healthy_instance(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, health) = app.health().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["database"], "connected");
    assert_eq!(health["redis"], "connected");
    assert_eq!(health["subscriber"], "subscribed");
    let live = app.get("/livez").await;
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(body(live).await, json!({ "status": "alive" }));
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(body(ready).await, json!({ "status": "ready" }));
}

async fn stats_count_every_lookup_exactly_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let stats = app.stats().await;
    assert_eq!(stats["hit_rate"], 0.0, "0, never NaN, without lookups");
    assert_eq!(stats["lookups"], 0);
    assert_eq!(stats["total_keys"], 0);
    for id in ["1", "1", "2", "nope", "nope"] {
        app.get_item(id).await;
    }
    app.batch(&["1", "2", "3", "3", "nope"]).await;
    let stats = app.stats().await;
    // singles: 1 miss, 1 hit, 2 miss, nope miss, nope hit (cached absence);
    // batch (distinct ids): 1 hit, 2 hit, 3 miss, nope hit.
    assert_eq!(stats["hits"], 5);
    assert_eq!(stats["negative_hits"], 2);
    assert_eq!(stats["misses"], 4);
    assert_eq!(stats["lookups"], 9);
    assert_eq!(stats["hit_rate"], 5.0 / 9.0);
    assert_eq!(stats["total_keys"], 4, "1, 2, 3 and the absence of nope");
    assert_eq!(stats["fills"], 4);
    assert_eq!(stats["upstream_fetches"], 4);
    assert!(stats["instance"].as_str().unwrap().starts_with("test-"));

    let reset = app.post("/stats/reset", &json!({})).await;
    assert_eq!(reset.status(), StatusCode::OK);
    let stats = app.stats().await;
    assert_eq!(
        (stats["hits"].as_u64(), stats["misses"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(
        stats["total_keys"], 4,
        "resetting counters does not touch the cache"
    );
}
