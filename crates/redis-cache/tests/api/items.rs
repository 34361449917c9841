//! Item reads and writes through the cache.

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, body, eventually, header};

both_backends!(
    second_read_is_a_hit_with_the_same_body,
    unknown_item_is_404_miss_until_created,
    partial_update_keeps_omitted_fields,
    update_is_visible_on_another_instance,
    conditional_requests_use_the_version_as_etag,
    create_conflicts_and_generated_ids,
    delete_removes_item_and_cache_entry,
    corrupt_cached_value_is_a_counted_miss_and_overwritten,
    demo_data_can_be_turned_off,
    custom_key_prefix_is_the_whole_namespace,
    whole_items_as_go_clients_send_them_are_accepted,
);

/// Go's encoding/json sends every field of a struct: an unset id as `""`,
/// unset times as year 1, zero numbers. An empty id is an absent one (on
/// create: generated; on update: the path's), server-managed fields are
/// ignored, and a different non-empty id on update is still refused.
async fn whole_items_as_go_clients_send_them_are_accepted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let zero_time = "0001-01-01T00:00:00Z";
    let go_item = |name: &str, stock: i64| {
        json!({
            "id": "", "name": name, "description": "", "price": 5.5, "category": "Go",
            "stock": stock, "created_at": zero_time, "updated_at": zero_time, "version": 0,
        })
    };
    let created = app.create(go_item("from go", 0)).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = body(created).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(!id.is_empty());
    assert_ne!(created["created_at"], zero_time);
    assert_eq!(created["version"], 1);

    let updated = app.put(&id, go_item("renamed", 7)).await;
    assert_eq!(updated.status(), StatusCode::OK);
    let updated = body(updated).await;
    assert_eq!(
        (updated["name"].clone(), updated["stock"].clone()),
        (json!("renamed"), json!(7))
    );
    assert_eq!(updated["created_at"], created["created_at"]);
    assert_eq!(updated["version"], 2);

    let mut other = go_item("x", 1);
    other["id"] = json!("someone-else");
    let refused = app.put(&id, other).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body(refused).await["details"]["field"], "id");
}

async fn demo_data_can_be_turned_off(backend: Backend) {
    let app = TestApp::builder(backend)
        .config(|c| c.database.demo_data = false)
        .spawn()
        .await;
    assert_eq!(app.get_item("1").await.status(), StatusCode::NOT_FOUND);
    let batch = body(app.batch(&["1", "2", "3"]).await).await;
    assert_eq!(batch["missing"], json!(["1", "2", "3"]));
}

async fn custom_key_prefix_is_the_whole_namespace(backend: Backend) {
    let app = TestApp::builder(backend)
        .config(|c| c.cache.prefix = redis_cache::cache::KeyPrefix::parse("shop:v2:").unwrap())
        .spawn()
        .await;
    app.get_item("1").await;
    assert!(app.redis_get("shop:v2:1").await.is_some());
    assert!(app.redis_get("item:1").await.is_none());
    app.redis_set("item:9", "someone else's").await;
    let outside = app.invalidate(json!({ "pattern": "item:*" })).await;
    assert_eq!(outside.status(), StatusCode::BAD_REQUEST);
    let inside = app.invalidate(json!({ "pattern": "shop:v2:*" })).await;
    assert_eq!(body(inside).await["deleted"], 1);
    assert!(app.redis_get("item:9").await.is_some());
    assert_eq!(app.stats().await["total_keys"], 0);
}

async fn second_read_is_a_hit_with_the_same_body(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let miss = app.get_item("2").await;
    assert_eq!(header(&miss, "x-cache-status"), Some("MISS"));
    let miss = body(miss).await;
    let hit = app.get_item("2").await;
    assert_eq!(header(&hit, "x-cache-status"), Some("HIT"));
    assert_eq!(body(hit).await, miss);
    let cached: serde_json::Value =
        serde_json::from_str(&app.redis_get("item:2").await.unwrap()).unwrap();
    assert_eq!(cached["item"], miss, "Redis holds the item under item:<id>");
    let fresh_for =
        cached["fresh_until"].as_i64().unwrap() - cached["fetched_at"].as_i64().unwrap();
    assert!(
        (270_000..=330_000).contains(&fresh_for),
        "fresh for the 5m TTL ± 10 %, got {fresh_for} ms"
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg("item:2")
        .query_async(&mut app.redis.conn().await)
        .await
        .unwrap();
    assert!(
        ttl > fresh_for + 590_000 && ttl <= fresh_for + 600_000,
        "kept 10 m past its freshness for fail-safe, got {ttl} ms"
    );
    let stats = app.stats().await;
    assert_eq!(
        (stats["hits"].as_u64(), stats["misses"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(stats["upstream_fetches"], 1);
}

async fn unknown_item_is_404_miss_until_created(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let missing = app.get_item("42").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&missing, "x-cache-status"), Some("MISS"));
    assert_eq!(body(missing).await, json!({ "error": "item not found" }));
    app.create_ok("42", "Answer").await;
    let found = app.get_item("42").await;
    assert_eq!(found.status(), StatusCode::OK);
    assert_eq!(body(found).await["name"], "Answer");
}

async fn partial_update_keeps_omitted_fields(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let original = body(app.get_item("3").await).await;
    let response = app.put("3", json!({ "stock": 24 })).await;
    assert_eq!(response.status(), StatusCode::OK);
    let updated = body(response).await;
    for field in [
        "id",
        "name",
        "description",
        "price",
        "category",
        "created_at",
    ] {
        assert_eq!(updated[field], original[field], "{field} must be kept");
    }
    assert_eq!(updated["stock"], 24);
    assert_eq!(updated["version"], 2);
    assert!(updated["updated_at"].as_str() > original["updated_at"].as_str());

    // PATCH has the same semantics; server-managed fields in the body are ignored.
    let patched = app
        .http
        .patch(app.url("/items/3"))
        .json(&json!({ "description": "tactile", "version": 99, "created_at": "2000-01-01T00:00:00Z" }))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::OK);
    let patched = body(patched).await;
    assert_eq!(patched["description"], "tactile");
    assert_eq!(patched["stock"], 24);
    assert_eq!(patched["version"], 3);
    assert_eq!(patched["created_at"], original["created_at"]);
    assert_eq!(body(app.get_item("3").await).await, patched);

    let unknown = app.put("nope", json!({ "name": "x" })).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

/// Another instance reads the update at once from Redis; its near cache, if
/// it holds the item, drops it as soon as the update's invalidation arrives
/// (bounded staleness, see `near_cache.rs`).
async fn update_is_visible_on_another_instance(backend: Backend) {
    let a = TestApp::spawn(backend).await;
    let b = a.peer().without_l1().spawn().await;
    let c = a.peer().spawn().await;
    for other in [&b, &c] {
        assert_eq!(body(other.get_item("1").await).await["stock"], 15);
        assert_eq!(
            header(&other.get_item("1").await, "x-cache-status"),
            Some("HIT")
        );
    }
    let received = c.stat("invalidations_received").await;
    let response = a.put("1", json!({ "stock": 7 })).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        a.redis_get("item:1").await,
        None,
        "gone from Redis before the answer"
    );
    let seen_by_b = b.get_item("1").await;
    assert_eq!(
        body(seen_by_b).await["stock"],
        7,
        "B must not serve the old value"
    );
    eventually("the invalidation reached C", || async {
        c.stat("invalidations_received").await > received
    })
    .await;
    assert_eq!(body(c.get_item("1").await).await["stock"], 7);
}

async fn conditional_requests_use_the_version_as_etag(backend: Backend) {
    use reqwest::Method;
    let app = TestApp::spawn(backend).await;
    let if_none_match = |tag| app.send_with(Method::GET, "/items/1", ("If-None-Match", tag), None);
    let not_modified = if_none_match("\"1\"").await;
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&not_modified, "etag"), Some("\"1\""));
    assert!(header(&not_modified, "x-cache-status").is_some());

    let put_if_match = |tag| {
        app.send_with(
            Method::PUT,
            "/items/1",
            ("If-Match", tag),
            Some(json!({ "stock": 1 })),
        )
    };
    let stale_put = put_if_match("\"7\"").await;
    assert_eq!(stale_put.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(body(stale_put).await["details"]["current_version"], 1);
    assert_eq!(
        body(app.get_item("1").await).await["stock"],
        15,
        "nothing written"
    );
    let fresh_put = put_if_match("\"1\"").await;
    assert_eq!(fresh_put.status(), StatusCode::OK);
    assert_eq!(header(&fresh_put, "etag"), Some("\"2\""));
    assert_eq!(if_none_match("\"1\"").await.status(), StatusCode::OK);

    let delete_if_match = |tag| app.send_with(Method::DELETE, "/items/1", ("If-Match", tag), None);
    assert_eq!(
        delete_if_match("\"1\"").await.status(),
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        delete_if_match("\"2\"").await.status(),
        StatusCode::NO_CONTENT
    );
}

async fn create_conflicts_and_generated_ids(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let conflict = app.create(json!({ "id": "1", "name": "dup" })).await;
    assert_eq!(conflict.status(), StatusCode::CONFLICT);
    assert_eq!(
        body(conflict).await["error"],
        "an item with this id already exists"
    );
    assert_eq!(body(app.get_item("1").await).await["name"], "Laptop Pro");

    let managed = app
        .create(json!({
            "id": "m1",
            "name": "Managed",
            "version": 9,
            "created_at": "2000-01-01T00:00:00Z",
            "updated_at": "2000-01-01T00:00:00Z"
        }))
        .await;
    assert_eq!(managed.status(), StatusCode::CREATED);
    let managed = body(managed).await;
    assert_eq!(
        managed["version"], 1,
        "server-managed fields in the body are ignored"
    );
    assert_ne!(managed["created_at"], "2000-01-01T00:00:00Z");

    let generated = app.create(json!({ "name": "No id" })).await;
    assert_eq!(generated.status(), StatusCode::CREATED);
    let location = header(&generated, "location").unwrap().to_owned();
    let item = body(generated).await;
    let id = item["id"].as_str().unwrap();
    assert_eq!(location, format!("/items/{id}"));
    assert_eq!(
        (item["price"].as_f64(), item["stock"].as_i64()),
        (Some(0.0), Some(0))
    );
    assert_eq!(body(app.get(&location).await).await, item);
}

async fn delete_removes_item_and_cache_entry(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.get_item("2").await;
    assert!(app.redis_get("item:2").await.is_some());
    assert_eq!(app.delete("2").await.status(), StatusCode::NO_CONTENT);
    assert!(app.redis_get("item:2").await.is_none());
    assert_eq!(app.get_item("2").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.delete("2").await.status(), StatusCode::NOT_FOUND);
}

async fn corrupt_cached_value_is_a_counted_miss_and_overwritten(backend: Backend) {
    let app = TestApp::builder(backend).without_l1().spawn().await;
    let other_item = body(app.get_item("2").await).await.to_string();
    for garbage in ["not json", r#"{"id":"1"}"#, other_item.as_str()] {
        app.redis_set("item:1", garbage).await;
        let response = app.get_item("1").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "x-cache-status"), Some("MISS"));
        assert_eq!(body(response).await["name"], "Laptop Pro");
        let repaired = app.redis_get("item:1").await.unwrap();
        assert!(
            repaired.contains("Laptop Pro"),
            "overwritten, got {repaired}"
        );
    }
    assert_eq!(app.stats().await["corrupt_values"], 3);

    // A corrupt value for an item that does not exist is replaced by its absence.
    app.redis_set("item:404", "garbage").await;
    assert_eq!(app.get_item("404").await.status(), StatusCode::NOT_FOUND);
    let absent: serde_json::Value =
        serde_json::from_str(&app.redis_get("item:404").await.unwrap()).unwrap();
    assert_eq!(absent["item"], serde_json::Value::Null);

    // In a batch too.
    app.redis_set("item:2", "garbage").await;
    let batch = body(app.batch(&["2"]).await).await;
    assert_eq!(batch["items"][0]["name"], "Wireless Mouse");
    assert!(
        app.redis_get("item:2")
            .await
            .unwrap()
            .contains("Wireless Mouse")
    );
    let stats = app.stats().await;
    assert_eq!(stats["corrupt_values"], 5);
    assert_eq!(
        stats["hits"], 0,
        "no corrupt value was ever served as a hit"
    );
}
