//! Invalidation: manual (by key and pattern), on writes, and from other
//! publishers on `cache:invalidate`.

use std::process::Command;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, body, eventually};

both_backends!(
    invalidation_by_key_and_pattern_spares_foreign_keys,
    invalidation_outside_the_namespace_is_rejected,
    writes_publish_invalidations_with_source_and_sequence,
    redis_cli_publish_in_the_original_format_invalidates,
    pattern_invalidation_scans_in_batches,
);

async fn exists(app: &TestApp, key: &str) -> bool {
    app.redis_get(key).await.is_some()
}

const FOREIGN_KEYS: [&str; 5] = ["other:1", "items:1", "item", "itemx:1", "session:item:1"];

async fn invalidation_by_key_and_pattern_spares_foreign_keys(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for key in FOREIGN_KEYS {
        app.redis_set(key, "not ours").await;
    }
    app.batch(&["1", "2", "3"]).await;
    let by_key = app.invalidate(json!({ "key": "item:2" })).await;
    assert_eq!(body(by_key).await["deleted"], 1);
    assert!(!exists(&app, "item:2").await);
    assert!(exists(&app, "item:1").await && exists(&app, "item:3").await);

    // A load in progress elsewhere: its lease goes too (voiding its fill),
    // but only cached values are counted.
    app.redis_set("item:9:lease", "token").await;
    let by_pattern = app.invalidate(json!({ "pattern": "item:*" })).await;
    assert_eq!(by_pattern.status(), StatusCode::OK);
    assert_eq!(body(by_pattern).await["deleted"], 2);
    assert!(!exists(&app, "item:1").await && !exists(&app, "item:3").await);
    assert!(!exists(&app, "item:9:lease").await);
    for key in FOREIGN_KEYS {
        assert!(
            exists(&app, key).await,
            "{key} is outside the namespace and must survive"
        );
    }
    assert_eq!(
        app.stats().await["total_keys"],
        0,
        "foreign keys are not counted"
    );

    // Both at once, and a miss on the next read.
    app.batch(&["1", "2"]).await;
    let both = app
        .invalidate(json!({ "key": "item:1", "pattern": "item:[2]" }))
        .await;
    assert_eq!(body(both).await["deleted"], 2);
    let reread = app.get_item("1").await;
    assert_eq!(reread.headers()["x-cache-status"], "MISS");
}

async fn invalidation_outside_the_namespace_is_rejected(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for key in FOREIGN_KEYS {
        app.redis_set(key, "not ours").await;
    }
    app.get_item("1").await;
    let rejected = [
        json!({ "pattern": "*" }),
        json!({ "pattern": "other:*" }),
        json!({ "pattern": "item*" }),
        json!({ "pattern": "?tem:*" }),
        json!({ "pattern": "[i]tem:*" }),
        json!({ "key": "other:1" }),
        json!({ "key": "item:*" }),
        json!({ "key": "item:1 " }),
        json!({ "key": "item" }),
        json!({ "key": "item:1", "pattern": "*" }),
    ];
    for request in rejected {
        let response = app.invalidate(request.clone()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{request}");
        let error = body(response).await;
        assert!(
            error["error"].as_str().unwrap().starts_with("invalid"),
            "{error}"
        );
    }
    for empty in [
        json!({}),
        json!({ "key": "", "pattern": "" }),
        json!({ "key": null }),
    ] {
        let response = app.invalidate(empty).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            body(response).await,
            json!({ "error": "key or pattern required" })
        );
    }
    for key in FOREIGN_KEYS.iter().chain(&["item:1"]) {
        assert!(exists(&app, key).await, "{key} must not have been touched");
    }
}

async fn writes_publish_invalidations_with_source_and_sequence(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut pubsub = app.redis.client().get_async_pubsub().await.unwrap();
    pubsub.subscribe("cache:invalidate").await.unwrap();
    let mut messages = pubsub.into_on_message();

    app.put("1", json!({ "stock": 1 })).await;
    app.delete("2").await;
    app.invalidate(json!({ "pattern": "item:3*" })).await;

    let mut received: Vec<Value> = Vec::new();
    for _ in 0..3 {
        let message = tokio::time::timeout(std::time::Duration::from_secs(10), messages.next())
            .await
            .expect("an invalidation message within 10 s")
            .unwrap();
        received.push(serde_json::from_slice(message.get_payload_bytes()).unwrap());
    }
    let instance = app.stats().await["instance"].clone();
    assert_eq!(received[0]["key"], "item:1");
    assert_eq!(received[1]["key"], "item:2");
    assert_eq!(received[2]["key"], "");
    assert_eq!(received[2]["pattern"], "item:3*");
    for (i, message) in received.iter().enumerate() {
        assert_eq!(message["source"], instance);
        assert_eq!(message["seq"], i as u64 + 1, "per-sender sequence");
        let timestamp = message["timestamp"].as_str().unwrap();
        assert!(
            time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
                .is_ok(),
            "{timestamp}"
        );
    }
    assert_eq!(app.stats().await["invalidations_published"], 3);
}

fn redis_cli_publish(app: &TestApp, payload: &str) {
    let status = Command::new("redis-cli")
        .args([
            "-p",
            &app.redis.port().to_string(),
            "PUBLISH",
            "cache:invalidate",
            payload,
        ])
        .output()
        .expect("redis-cli is installed");
    assert!(status.status.success());
}

async fn received(app: &TestApp) -> u64 {
    app.stats().await["invalidations_received"]
        .as_u64()
        .unwrap()
}

async fn redis_cli_publish_in_the_original_format_invalidates(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.batch(&["1", "2", "3"]).await;
    app.redis_set("other:1", "not ours").await;

    redis_cli_publish(
        &app,
        r#"{"key":"item:1","timestamp":"2024-05-01T10:00:00.123456789Z","source":"api"}"#,
    );
    eventually("key message applied", || async {
        received(&app).await == 1
    })
    .await;
    assert!(!exists(&app, "item:1").await);
    assert!(exists(&app, "item:2").await);

    // Garbage and foreign namespaces are ignored; the subscriber keeps going.
    redis_cli_publish(&app, "not json at all");
    redis_cli_publish(&app, r#"{"key":"","pattern":"*","source":"api"}"#);
    redis_cli_publish(&app, r#"{"key":"other:1","source":"api"}"#);
    redis_cli_publish(
        &app,
        r#"{"key":"","pattern":"item:*","timestamp":"2024-05-01T10:00:01Z","source":"api"}"#,
    );
    eventually("pattern message applied", || async {
        received(&app).await == 2
    })
    .await;
    assert!(!exists(&app, "item:2").await && !exists(&app, "item:3").await);
    assert!(exists(&app, "other:1").await);
    let (_, health) = app.health().await;
    assert_eq!(health["subscriber"], "subscribed");
}

async fn pattern_invalidation_scans_in_batches(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut conn = app.redis.conn().await;
    let mut pipe = redis::pipe();
    for i in 0..2500 {
        pipe.cmd("SET")
            .arg(format!("item:bulk{i}"))
            .arg("x")
            .ignore();
        pipe.cmd("SET")
            .arg(format!("keep:bulk{i}"))
            .arg("x")
            .ignore();
    }
    pipe.query_async::<()>(&mut conn).await.unwrap();
    let calls_before = app.redis.command_calls();
    let response = app.invalidate(json!({ "pattern": "item:bulk*" })).await;
    assert_eq!(body(response).await["deleted"], 2500);
    let calls_after = app.redis.command_calls();
    assert!(calls_after["scan"] - calls_before.get("scan").copied().unwrap_or(0) > 1);
    assert!(!calls_after.contains_key("keys"), "KEYS must never be used");
    let left: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
    assert_eq!(left, 2500, "only the keep:* keys remain");
}
