//! Faults: Redis killed, frozen or cut off, and the source of truth going away.
//! The service answers throughout, never with a 5xx because of Redis, and
//! recovers by itself.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, TcpProxy, TestApp, body, eventually, header, postgres};

both_backends!(
    redis_killed_means_bypass_then_hits_again_after_restart,
    frozen_redis_means_bypass_then_hits_again,
    network_cut_defers_invalidations_until_redis_is_reachable,
    starts_without_redis_and_caches_once_it_appears,
    redis_refusing_commands_is_a_bypass_not_an_error,
    a_primary_turned_replica_gets_no_writes_until_promoted,
);

/// What a DNS-based failover looks like from an old connection: the server
/// behind it is now a read-only replica.
async fn a_primary_turned_replica_gets_no_writes_until_promoted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.get_item("1").await;
    let mut admin = app.redis.conn().await;
    let nowhere = crate::helpers::free_port();
    redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(nowhere)
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let updated = app.put("1", json!({ "stock": 5 })).await;
    assert_eq!(updated.status(), StatusCode::OK);
    let read = app.get_item("1").await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(
        body(read).await["stock"],
        5,
        "the stale cached value is not served"
    );
    assert!(app.stats().await["pending_invalidations"].as_u64().unwrap() >= 1);

    redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    eventually("the deferred delete reaches the new primary", || async {
        app.stats().await["pending_invalidations"] == 0
    })
    .await;
    assert!(app.redis_get("item:1").await.is_none());
    app.get_item("1").await;
    let hit = app.get_item("1").await;
    assert_eq!(header(&hit, "x-cache-status"), Some("HIT"));
    assert_eq!(body(hit).await["stock"], 5);
}

async fn redis_refusing_commands_is_a_bypass_not_an_error(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.get_item("1").await;
    let mut admin = app.redis.conn().await;
    // Out of memory with no eviction: every write (fills) is refused.
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    for _ in 0..2 {
        let response = app.get_item("2").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(&response, "x-cache-status"),
            Some("MISS"),
            "fills refused, reads fine"
        );
    }
    assert_eq!(
        app.put("1", json!({ "stock": 4 })).await.status(),
        StatusCode::OK
    );
    assert_eq!(body(app.get_item("1").await).await["stock"], 4);

    // The service's user loses the right to read keys at all.
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("-get")
        .arg("-mget")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let refused = app.get_item("1").await;
    assert_eq!(refused.status(), StatusCode::OK);
    assert_eq!(header(&refused, "x-cache-status"), Some("BYPASS"));
    let batch = app.batch(&["1", "2"]).await;
    assert_eq!(batch.status(), StatusCode::OK);
    assert_eq!(header(&batch, "x-cache-status"), Some("BYPASS"));
    assert_eq!(app.health().await.0, StatusCode::OK);
}

async fn starts_without_redis_and_caches_once_it_appears(backend: Backend) {
    let placeholder = TestApp::spawn(backend).await;
    placeholder.redis.kill();
    let app = placeholder.peer().without_waiting_for_cache().spawn().await;
    let (status, health) = app.health().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "degraded");
    let response = app.get_item("1").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-cache-status"), Some("BYPASS"));

    app.redis.restart();
    app.wait_until_cache_ready().await;
    assert_eq!(
        header(&app.get_item("1").await, "x-cache-status"),
        Some("MISS")
    );
    assert_eq!(
        header(&app.get_item("1").await, "x-cache-status"),
        Some("HIT")
    );
}

async fn redis_killed_means_bypass_then_hits_again_after_restart(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.get_item("1").await;
    assert_eq!(
        header(&app.get_item("1").await, "x-cache-status"),
        Some("HIT")
    );

    app.redis.kill();
    // Until the lost subscription is noticed, the near cache may still
    // answer "1" (a HIT from L1, valid until then); after, nothing is.
    eventually("the outage was noticed", || async {
        app.health().await.1["subscriber"] == "disconnected"
    })
    .await;
    for id in ["1", "2", "404"] {
        let response = app.get_item(id).await;
        assert!(
            !response.status().is_server_error(),
            "{id}: {}",
            response.status()
        );
        assert_eq!(header(&response, "x-cache-status"), Some("BYPASS"));
    }
    let batch = app.batch(&["1", "2"]).await;
    assert_eq!(batch.status(), StatusCode::OK);
    assert_eq!(header(&batch, "x-cache-status"), Some("BYPASS"));
    assert_eq!(body(batch).await["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        app.put("1", json!({ "stock": 3 })).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.create_ok("new", "During outage").await["version"], 1);
    assert_eq!(app.delete("new").await.status(), StatusCode::NO_CONTENT);
    assert_eq!(body(app.get_item("1").await).await["stock"], 3);
    let (status, health) = app.health().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["redis"], "disconnected");
    let stats = app.stats().await;
    assert_eq!(stats["total_keys"], json!(null));
    assert_eq!(stats["bypassed"], 6);
    assert_eq!(
        stats["hits"].as_u64().unwrap() + stats["misses"].as_u64().unwrap(),
        stats["lookups"].as_u64().unwrap()
    );

    app.redis.restart();
    app.wait_until_cache_ready().await;
    eventually("writes made during the outage are invalidated", || async {
        app.stats().await["pending_invalidations"] == 0
    })
    .await;
    assert_eq!(app.health().await.1["status"], "healthy");
    assert_eq!(
        header(&app.get_item("1").await, "x-cache-status"),
        Some("MISS")
    );
    let hit = app.get_item("1").await;
    assert_eq!(header(&hit, "x-cache-status"), Some("HIT"));
    assert_eq!(body(hit).await["stock"], 3);
}

async fn frozen_redis_means_bypass_then_hits_again(backend: Backend) {
    // About Redis itself: the near cache would answer the first reads.
    let app = TestApp::builder(backend).without_l1().spawn().await;
    app.get_item("1").await;
    app.redis.pause();
    for _ in 0..3 {
        let response = app.get_item("1").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "x-cache-status"), Some("BYPASS"));
        assert_eq!(body(response).await["name"], "Laptop Pro");
    }
    app.redis.resume();
    eventually("hits again once redis answers", || async {
        header(&app.get_item("1").await, "x-cache-status") == Some("HIT")
    })
    .await;
}

/// A slow Redis is waited for as long as `REDIS_TIMEOUT` says, on the same
/// connection. redis-rs's own default response timeout (500 ms) used to cut
/// such a reply short and drop the connection with every command in flight
/// on it: under load, lease waiters then gave up and read the source of truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_reply_slower_than_half_a_second_but_within_the_timeout_is_a_hit() {
    let app = TestApp::builder(Backend::Sqlite)
        .without_l1()
        .config(|c| c.redis.timeout = Duration::from_secs(10))
        .spawn()
        .await;
    app.get_item("1").await;
    app.redis.pause();
    let lookups: Vec<_> = (0..10).map(|_| app.spawn_get("1")).collect();
    // Not a wait for an event: this is the slow reply under test. Lookups
    // that reach Redis late only see a shorter stall, never a false failure.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.redis.resume();
    for lookup in futures::future::join_all(lookups).await {
        let (status, cache, item) = lookup.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(cache, "HIT", "answered by Redis, slow as it was");
        assert_eq!(item["name"], "Laptop Pro");
    }
    assert_eq!(app.stats().await["bypassed"], 0);
}

async fn network_cut_defers_invalidations_until_redis_is_reachable(backend: Backend) {
    let redis_side = TestApp::spawn(backend).await;
    let proxy = TcpProxy::start(redis_side.redis.port()).await;
    let app = redis_side.peer().redis_url(proxy.url()).spawn().await;
    app.get_item("1").await;
    assert_eq!(
        header(&app.get_item("1").await, "x-cache-status"),
        Some("HIT")
    );

    proxy.cut();
    let updated = app.put("1", json!({ "stock": 2 })).await;
    assert_eq!(updated.status(), StatusCode::OK);
    let during = app.get_item("1").await;
    assert_eq!(header(&during, "x-cache-status"), Some("BYPASS"));
    assert_eq!(body(during).await["stock"], 2);
    let manual = app.invalidate(json!({ "key": "item:3" })).await;
    assert_eq!(manual.status(), StatusCode::ACCEPTED);
    // Redis itself was never told: it still holds the old value.
    let stale = app
        .redis_get("item:1")
        .await
        .expect("old value still in redis");
    assert!(stale.contains("\"stock\":15"));
    assert_eq!(app.stats().await["pending_invalidations"], 2);

    proxy.restore();
    app.wait_until_cache_ready().await;
    eventually("deferred invalidations applied", || async {
        app.stats().await["pending_invalidations"] == 0
    })
    .await;
    assert!(
        app.redis_get("item:1").await.is_none(),
        "the stale value was deleted"
    );
    let after = app.get_item("1").await;
    assert_eq!(header(&after, "x-cache-status"), Some("MISS"));
    assert_eq!(body(after).await["stock"], 2);
    assert_eq!(body(app.get_item("1").await).await["stock"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_comes_back_after_a_long_redis_outage() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.redis.kill();
    eventually("subscriber notices the outage", || async {
        app.health().await.1["subscriber"] == "disconnected"
    })
    .await;
    // The outage itself: longer than a client library's reconnect budget.
    tokio::time::sleep(Duration::from_secs(8)).await;
    app.redis.restart();
    app.wait_until_cache_ready().await;
    app.get_item("2").await;
    assert!(app.redis_get("item:2").await.is_some());
    let status = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &app.redis.port().to_string(),
            "PUBLISH",
            "cache:invalidate",
        ])
        .arg(r#"{"key":"item:2","source":"ops"}"#)
        .output()
        .unwrap();
    assert!(status.status.success());
    eventually("invalidation flows again", || async {
        app.redis_get("item:2").await.is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_of_truth_down_means_503_but_cached_items_still_served() {
    let app = TestApp::spawn(Backend::Postgres).await;
    app.get_item("1").await;
    let database = postgres::refuse_connections(&app.database.url).await;

    let (status, health) = app.health().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health["status"], "unhealthy");
    assert_eq!(health["database"], "disconnected");
    assert_eq!(
        app.get("/readyz").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(app.get("/livez").await.status(), StatusCode::OK);

    let cached = app.get_item("1").await;
    assert_eq!(cached.status(), StatusCode::OK, "served from Redis");
    assert_eq!(header(&cached, "x-cache-status"), Some("HIT"));
    let uncached = app.get_item("2").await;
    assert_eq!(uncached.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&uncached, "retry-after"), Some("1"));
    assert_eq!(
        body(uncached).await,
        json!({ "error": "source of truth unavailable" })
    );
    let write = app.put("1", json!({ "stock": 1 })).await;
    assert_eq!(write.status(), StatusCode::SERVICE_UNAVAILABLE);

    postgres::allow_connections(&database).await;
    eventually("healthy again", || async {
        app.health().await.1["status"] == "healthy"
    })
    .await;
    // Item 2 failed moments ago: it is retried once its throttle interval ends.
    eventually("item 2 loads again", || async {
        app.get_item("2").await.status() == StatusCode::OK
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_hanging_up_mid_write_still_invalidates_the_cache() {
    use sqlx::Connection;
    let app = TestApp::spawn(Backend::Postgres).await;
    app.get_item("1").await;
    assert_eq!(
        header(&app.get_item("1").await, "x-cache-status"),
        Some("HIT")
    );

    // Hold the row lock so the service's UPDATE waits inside the database.
    let mut blocker = sqlx::PgConnection::connect(&app.database.url)
        .await
        .unwrap();
    let mut tx = blocker.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM items WHERE id = '1' FOR UPDATE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let impatient = tokio::spawn({
        let (http, url) = (app.http.clone(), app.url("/items/1"));
        async move { http.put(url).json(&json!({ "stock": 99 })).send().await }
    });
    eventually("the service's UPDATE waits for the row lock", || async {
        postgres::admin_count(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE items%'",
        )
        .await
            == 1
    })
    .await;
    // The client gives up: its connection closes and axum drops the handler
    // (hyper notices the closed connection at once).
    impatient.abort();
    assert!(impatient.await.unwrap_err().is_cancelled());
    tx.commit().await.unwrap();

    // The write went through after the client left; the cache must not hide it.
    eventually("the abandoned write is committed and visible", || async {
        body(app.get_item("1").await).await["stock"] == 99
    })
    .await;
    assert_eq!(
        header(&app.get_item("1").await, "x-cache-status"),
        Some("HIT")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_waits_for_a_postgres_that_is_not_reachable_yet() {
    let postgres = crate::helpers::UnreachablePostgres::new().await;
    let (proxy, proxied) = (&postgres.proxy, postgres.url.clone());
    let starting = tokio::spawn(
        TestApp::builder(Backend::Postgres)
            .config(move |c| {
                c.database.url = redis_cache::store::DatabaseUrl::parse(&proxied).unwrap()
            })
            .spawn(),
    );
    eventually("start-up retries the database", || async {
        proxy.refused() >= 2
    })
    .await;
    assert!(!starting.is_finished(), "start-up must wait, not fail");
    proxy.restore();
    let app = starting
        .await
        .expect("the service starts once the database answers");
    assert_eq!(app.get_item("1").await.status(), StatusCode::OK);
}
