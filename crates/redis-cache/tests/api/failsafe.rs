//! Fail-safe (property 8): while the source of truth is down or timing out,
//! what Redis holds is served past its freshness, marked STALE with its age;
//! ids not cached get a 503; each id costs at most one attempt per throttle
//! interval; recovery needs nothing.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, TestApp, body, eventually, header, postgres};

fn short_lived(stale_if_error: Duration) -> impl FnOnce(&mut redis_cache::Config) + Send + 'static {
    move |c| {
        c.cache.ttl = Duration::from_millis(300);
        c.cache.ttl_jitter = 0.0;
        c.cache.early_refresh = 0.0;
        c.cache.stale_if_error = stale_if_error;
        c.cache.source_timeout = Duration::from_millis(500);
        c.cache.failsafe_throttle = Duration::from_secs(30);
    }
}

/// Without the stale window the entry is gone when its freshness ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_source_is_down_cached_values_are_served_stale() {
    for stale_if_error in [Duration::ZERO, Duration::from_secs(600)] {
        let app = TestApp::builder(Backend::Postgres)
            .config(short_lived(stale_if_error))
            .spawn()
            .await;
        assert_eq!(
            header(&app.get_item("1").await, "x-cache-status"),
            Some("MISS")
        );
        let database = postgres::refuse_connections(&app.database.url).await;
        eventually("the cached value is no longer fresh", || async {
            header(&app.get_item("1").await, "x-cache-status") != Some("HIT")
        })
        .await;
        // Count from here: 45 lookups follow.
        app.post("/stats/reset", &json!({})).await;
        let response = app.get_item("1").await;
        if stale_if_error.is_zero() {
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            continue;
        }
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "x-cache-status"), Some("STALE"));
        let age: u64 = header(&response, "age").unwrap().parse().unwrap();
        assert!(age < 600);
        assert_eq!(body(response).await["name"], "Laptop Pro");

        let uncached = app.get_item("2").await;
        assert_eq!(uncached.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body(uncached).await,
            json!({ "error": "source of truth unavailable" })
        );
        let batch = app.batch(&["1", "2"]).await;
        assert_eq!(batch.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body(batch).await["details"]["unavailable_ids"],
            json!(["2"])
        );
        let stale_batch = app.batch(&["1"]).await;
        assert_eq!(stale_batch.status(), StatusCode::OK);
        assert_eq!(header(&stale_batch, "x-cache-status"), Some("STALE"));

        // Each id got one attempt; within the throttle interval, no more.
        let attempts = app.stat("upstream_fetches").await;
        for _ in 0..20 {
            assert_eq!(app.get_item("1").await.status(), StatusCode::OK);
            assert_eq!(
                app.get_item("2").await.status(),
                StatusCode::SERVICE_UNAVAILABLE
            );
        }
        assert_eq!(app.stat("upstream_fetches").await, attempts);
        let (status, health) = app.health().await;
        assert_eq!(
            (status, health["status"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("unhealthy"))
        );
        let stats = app.stats().await;
        assert!(stats["stale_served"].as_u64().unwrap() >= 22);
        assert_eq!(stats["lookups"], 45, "1 + 1 + 2 + 1 + 20 × 2");
        assert_eq!(
            stats["hits"].as_u64().unwrap() + stats["misses"].as_u64().unwrap(),
            stats["lookups"].as_u64().unwrap()
        );

        postgres::allow_connections(&database).await;
        let recovered = TestApp::builder(Backend::Postgres)
            .config(short_lived(stale_if_error))
            .spawn()
            .await;
        drop(recovered);
    }
}

/// Recovery: once the database answers again, a fresh instance and the
/// old one both load normally (the old one after its throttle interval).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_needs_no_restart() {
    let app = TestApp::builder(Backend::Postgres)
        .config(|c| {
            short_lived(Duration::from_secs(600))(c);
            c.cache.failsafe_throttle = Duration::from_millis(200);
        })
        .spawn()
        .await;
    app.get_item("1").await;
    let database = postgres::refuse_connections(&app.database.url).await;
    eventually("stale", || async {
        header(&app.get_item("1").await, "x-cache-status") == Some("STALE")
    })
    .await;
    postgres::allow_connections(&database).await;
    eventually("fresh values again", || async {
        header(&app.get_item("1").await, "x-cache-status") == Some("MISS")
    })
    .await;
    assert_eq!(app.health().await.1["status"], "healthy");
}

/// A source that hangs is a failing source: past SOURCE_TIMEOUT the stale
/// value is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_times_out_is_a_failure_too() {
    use sqlx::Connection;
    let app = TestApp::builder(Backend::Postgres)
        .config(short_lived(Duration::from_secs(600)))
        .spawn()
        .await;
    app.get_item("1").await;
    let mut locker = sqlx::PgConnection::connect(&app.database.url)
        .await
        .unwrap();
    let mut tx = locker.begin().await.unwrap();
    sqlx::query("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .unwrap();
    eventually("served stale while reads hang", || async {
        header(&app.get_item("1").await, "x-cache-status") == Some("STALE")
    })
    .await;
    tx.rollback().await.unwrap();
}

/// The fail-safe throttle holds across instances: once one instance failed
/// to read an id, the others answer at once from what Redis holds (STALE or
/// 503) instead of waiting out the lease and trying the database themselves.
/// With the throttle off, the failed load just gives its lease back and the
/// other instance tries the database again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failed_read_spares_the_other_instances() {
    for throttle in [Duration::ZERO, Duration::from_secs(30)] {
        let tweak = move |c: &mut redis_cache::Config| {
            short_lived(Duration::from_secs(600))(c);
            c.cache.failsafe_throttle = throttle;
        };
        let first = TestApp::builder(Backend::Postgres)
            .config(tweak)
            .spawn()
            .await;
        let second = first.peer().config(tweak).spawn().await;
        let database = postgres::refuse_connections(&first.database.url).await;
        let failed = first.get_item("2").await;
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(first.stat("upstream_fetches").await, 1);

        let answer = second.get_item("2").await;
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        let tried = second.stat("upstream_fetches").await;
        if throttle.is_zero() {
            assert_eq!(
                tried, 1,
                "without the throttle, the second instance tries too"
            );
        } else {
            assert_eq!(
                tried, 0,
                "the second instance knew the read had just failed"
            );
            assert_eq!(second.stat("lookups").await, 1);
        }
        postgres::allow_connections(&database).await;
    }
}
