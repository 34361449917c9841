//! The circuit breaker on Redis (property 9): a Redis that stops answering
//! costs a few timeouts, then is skipped until it answers a probe again; and
//! without Redis the source of truth still sees one read per key at a time.
//! These tests look at Redis reads, so the near cache is off where it would
//! answer in Redis' place.

use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;

use crate::helpers::{Backend, FillGate, TestApp, eventually, header};

/// With the breaker off, every request waits out the Redis timeout; with it
/// on, only the first two do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_is_skipped_after_a_few_timeouts() {
    for failures in [0, 2] {
        let app = TestApp::builder(Backend::Sqlite)
            .without_l1()
            .config(move |c| {
                c.redis.timeout = Duration::from_millis(200);
                c.redis.breaker_failures = failures;
                c.redis.breaker_cooldown = Duration::from_secs(60);
            })
            .spawn()
            .await;
        app.get_item("1").await;
        app.redis.pause();
        let before = app.catalog.status().redis_round_trips;
        for _ in 0..6 {
            let response = app.get_item("1").await;
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(header(&response, "x-cache-status"), Some("BYPASS"));
        }
        let attempts = app.catalog.status().redis_round_trips - before;
        let stats = app.stats().await;
        assert_eq!(stats["lookups"], 7);
        assert_eq!(
            (stats["hits"].as_u64(), stats["misses"].as_u64()),
            (Some(0), Some(7)),
            "the first lookup missed too"
        );
        assert_eq!(stats["bypassed"], 6);
        if failures == 0 {
            assert!(attempts >= 6, "every request tried redis: {attempts}");
        } else {
            assert_eq!(attempts, 2, "two timeouts opened the circuit");
            let (_, health) = app.health().await;
            assert_eq!(health["redis_circuit"], "open");
            assert_eq!(health["status"], "degraded");
            assert_eq!(app.stats().await["redis_circuit"], "open");
        }
        app.redis.resume();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_closes_by_itself_once_redis_answers() {
    let app = TestApp::builder(Backend::Sqlite)
        .without_l1()
        .config(|c| {
            c.redis.timeout = Duration::from_millis(200);
            c.redis.breaker_failures = 2;
            c.redis.breaker_cooldown = Duration::from_millis(300);
        })
        .spawn()
        .await;
    app.get_item("1").await;
    app.redis.pause();
    for _ in 0..3 {
        app.get_item("1").await;
    }
    assert_eq!(app.health().await.1["redis_circuit"], "open");
    app.redis.resume();
    eventually("closed again and hitting", || async {
        header(&app.get_item("1").await, "x-cache-status") == Some("HIT")
    })
    .await;
    assert_eq!(app.health().await.1["redis_circuit"], "closed");
}

/// Nobody has to ask: once the cooldown is over, the connection's own
/// health check is the trial that closes the circuit, so an idle instance
/// does not report an open circuit (and page someone) for a Redis that has
/// long been back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_instance_closes_its_circuit_once_redis_answers() {
    let app = TestApp::builder(Backend::Sqlite)
        .without_l1()
        .config(|c| {
            c.redis.timeout = Duration::from_millis(200);
            c.redis.breaker_failures = 2;
            c.redis.breaker_cooldown = Duration::from_millis(300);
            // No poll either: only the health check may close it.
            c.redis_info_interval = Duration::ZERO;
        })
        .spawn()
        .await;
    app.get_item("1").await;
    app.redis.pause();
    for _ in 0..2 {
        app.get_item("1").await;
    }
    let open = r#"redis_cache_circuit_breaker_state{state="open"} 1"#;
    assert!(
        app.get("/metrics")
            .await
            .text()
            .await
            .unwrap()
            .contains(open)
    );
    app.redis.resume();
    // `/metrics` asks Redis nothing: only the health check can close it.
    eventually("closed without a request", || async {
        let text = app.get("/metrics").await.text().await.unwrap();
        text.contains(r#"redis_cache_circuit_breaker_state{state="closed"} 1"#)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_source_still_sees_one_read_per_key_at_a_time() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.redis.kill();
    // Losing the subscription forgets loads in flight; let that happen first.
    eventually("the outage was noticed", || async {
        app.health().await.1["subscriber"] == "disconnected"
    })
    .await;
    let gate = FillGate::install(&app.catalog);
    let lookups: Vec<_> = (0..50).map(|_| app.spawn_get("3")).collect();
    eventually("49 lookups joined the first", || async {
        app.stat("coalesced").await == 49
    })
    .await;
    gate.remove();
    for (status, cache, _) in join_all(lookups).await.into_iter().map(Result::unwrap) {
        assert_eq!((status, cache.as_str()), (StatusCode::OK, "BYPASS"));
    }
    assert_eq!(app.stat("upstream_fetches").await, 1);
}

/// The breaker saves reads a timeout; it never keeps a write's delete from
/// Redis. Here Redis is back while this instance's circuit is still open:
/// the write's delete goes through at once, so a peer whose circuit is
/// closed does not keep serving the old value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_does_not_hold_back_a_writes_delete() {
    let writer = TestApp::builder(Backend::Sqlite)
        .config(|c| {
            c.redis.timeout = Duration::from_millis(200);
            c.redis.breaker_failures = 2;
            c.redis.breaker_cooldown = Duration::from_secs(600);
        })
        .spawn()
        .await;
    let reader = writer.peer().spawn().await;
    assert_eq!(
        header(&reader.get_item("1").await, "x-cache-status"),
        Some("MISS")
    );
    writer.redis.pause();
    for _ in 0..2 {
        writer.get_item("1").await;
    }
    writer.redis.resume();
    assert_eq!(writer.health().await.1["redis_circuit"], "open");

    let written = writer.put("1", serde_json::json!({ "stock": 3 })).await;
    assert_eq!(written.status(), StatusCode::OK);
    assert_eq!(
        writer.redis_get("item:1").await,
        None,
        "deleted despite the open circuit"
    );
    let read = reader.get_item("1").await;
    assert_eq!(header(&read, "x-cache-status"), Some("MISS"));
    assert_eq!(crate::helpers::body(read).await["stock"], 3);
    assert_eq!(writer.stats().await["pending_invalidations"], 0);
}
