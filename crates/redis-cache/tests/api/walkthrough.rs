//! The original example's `curl` walkthrough, step by step, with the same
//! bodies, checking statuses, headers and bodies.

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, body, header};

both_backends!(original_walkthrough_works_step_by_step);

async fn original_walkthrough_works_step_by_step(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    // Health check
    let (status, health) = app.health().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["redis"], "connected");

    // Get item (cache miss first time), then again (cache hit)
    let first = app.get_item("1").await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(header(&first, "x-cache-status"), Some("MISS"));
    assert_eq!(header(&first, "etag"), Some("\"1\""));
    let laptop = body(first).await;
    assert_eq!(laptop["id"], "1");
    assert_eq!(laptop["name"], "Laptop Pro");
    assert_eq!(
        laptop["description"],
        "High-performance laptop for developers"
    );
    assert_eq!(laptop["price"], 1299.99);
    assert_eq!(laptop["category"], "Electronics");
    assert_eq!(laptop["stock"], 15);
    assert_eq!(laptop["version"], 1);
    let second = app.get_item("1").await;
    assert_eq!(header(&second, "x-cache-status"), Some("HIT"));
    assert_eq!(
        body(second).await,
        laptop,
        "a hit returns exactly what the miss returned"
    );

    // Get multiple items
    let batch = app.batch(&["1", "2", "3"]).await;
    assert_eq!(batch.status(), StatusCode::OK);
    assert_eq!(header(&batch, "x-cache-hits"), Some("1"));
    assert_eq!(header(&batch, "x-cache-misses"), Some("2"));
    let batch = body(batch).await;
    let names: Vec<&str> = batch["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Laptop Pro", "Wireless Mouse", "Mechanical Keyboard"]
    );
    assert_eq!(batch["missing"], json!([]));

    // Create item
    let created = app
        .create(json!({
            "id": "100",
            "name": "New Product",
            "price": 99.99,
            "category": "Electronics",
            "stock": 10
        }))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(header(&created, "location"), Some("/items/100"));
    let created = body(created).await;
    assert_eq!(created["name"], "New Product");
    assert_eq!(created["version"], 1);
    assert_eq!(created["created_at"], created["updated_at"]);

    // The created item was written through: the next read is a hit (the
    // original's own test expects it).
    let created_read = app.get_item("100").await;
    assert_eq!(header(&created_read, "x-cache-status"), Some("HIT"));
    let before = body(created_read).await;
    assert_eq!(before, created);

    // Update item (triggers invalidation)
    let updated = app
        .put("100", json!({"name": "Updated Product", "price": 149.99}))
        .await;
    assert_eq!(updated.status(), StatusCode::OK);
    assert_eq!(header(&updated, "etag"), Some("\"2\""));
    let updated = body(updated).await;
    assert_eq!(updated["name"], "Updated Product");
    assert_eq!(updated["price"], 149.99);
    assert_eq!(
        updated["category"], "Electronics",
        "omitted fields are kept"
    );
    assert_eq!(updated["stock"], 10);
    assert_eq!(updated["created_at"], before["created_at"]);
    assert_ne!(updated["updated_at"], before["updated_at"]);
    let reread = app.get_item("100").await;
    assert_eq!(
        header(&reread, "x-cache-status"),
        Some("MISS"),
        "the update invalidated the key"
    );
    assert_eq!(
        body(reread).await,
        updated,
        "the update is visible, not erased"
    );

    // Delete item (triggers invalidation)
    let deleted = app.delete("100").await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert!(deleted.bytes().await.unwrap().is_empty());
    let gone = app.get_item("100").await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(body(gone).await, json!({ "error": "item not found" }));

    // Get cache statistics
    let stats = app.stats().await;
    assert_eq!(stats["hits"], 3);
    assert_eq!(stats["misses"], 5);
    assert_eq!(stats["lookups"], 8);
    assert_eq!(stats["hit_rate"], 0.375);
    assert!(stats["total_keys"].as_u64().is_some());

    // Manual cache invalidation, by key then by pattern
    let by_key = app.invalidate(json!({"key": "item:1"})).await;
    assert_eq!(by_key.status(), StatusCode::OK);
    assert_eq!(
        body(by_key).await,
        json!({ "message": "invalidation published", "deleted": 1 })
    );
    let by_pattern = app.invalidate(json!({"pattern": "item:*"})).await;
    assert_eq!(by_pattern.status(), StatusCode::OK);
    // item:2, item:3, and the cached absence of the deleted item 100.
    assert_eq!(
        body(by_pattern).await,
        json!({ "message": "invalidation published", "deleted": 3 })
    );
    assert_eq!(app.stats().await["total_keys"], 0);

    // Reset statistics
    let reset = app.post("/stats/reset", &json!({})).await;
    assert_eq!(reset.status(), StatusCode::OK);
    assert_eq!(body(reset).await, json!({ "message": "stats reset" }));
    let stats = app.stats().await;
    assert_eq!(
        (stats["hits"].as_u64(), stats["misses"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(stats["hit_rate"], 0.0);
}
