//! When cached values end: absences remembered for the negative TTL
//! (property 5), TTLs spread so keys cached together do not expire together
//! (property 6), hot keys refreshed before they expire (property 7).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, body, header};

/// Property 5: hammering an unknown id costs one source-of-truth read per
/// negative TTL; with negative caching off, one per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_id_is_read_once_per_negative_ttl() {
    for negative_ttl in [Duration::ZERO, Duration::from_secs(30)] {
        let app = TestApp::builder(Backend::Sqlite)
            .config(move |c| c.cache.negative_ttl = negative_ttl)
            .spawn()
            .await;
        let mut statuses = Vec::new();
        for _ in 0..100 {
            let response = app.get_item("ghost").await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND);
            statuses.push(header(&response, "x-cache-status").unwrap().to_owned());
            assert_eq!(body(response).await, json!({ "error": "item not found" }));
        }
        let stats = app.stats().await;
        if negative_ttl.is_zero() {
            assert_eq!(stats["upstream_fetches"], 100);
        } else {
            assert_eq!(stats["upstream_fetches"], 1);
            assert_eq!(statuses[0], "MISS");
            assert!(statuses[1..].iter().all(|s| s == "HIT"), "{statuses:?}");
            assert_eq!(stats["negative_hits"], 99);
        }
    }
}

/// Property 6: 10,000 keys warmed at once get expiry times spread over the
/// jitter window; the busiest 1 %-of-TTL slice holds at most 1.2 times its
/// share. Without jitter they all expire within the same slice, and the
/// source of truth would take every re-read at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_cached_together_do_not_expire_together() {
    const KEYS: usize = 10_000;
    for jitter in [0.0, 0.1] {
        let ttl = Duration::from_secs(300);
        let app = TestApp::builder(Backend::Postgres)
            .config(move |c| {
                c.cache.ttl = ttl;
                c.cache.ttl_jitter = jitter;
            })
            .spawn()
            .await;
        insert_items(&app, KEYS).await;
        let warmed = app.post("/cache/warm", &json!({ "limit": KEYS })).await;
        assert_eq!(
            body(warmed).await["loaded"],
            KEYS as u64,
            "the most recent ones"
        );

        let expiries = cached_expiries(&app, "item:w*").await;
        assert_eq!(expiries.len(), KEYS);
        let start = *expiries.iter().min().unwrap();
        let slice = ttl.as_millis() as i64 / 100;
        let mut slices = std::collections::HashMap::<i64, usize>::new();
        for expiry in &expiries {
            *slices.entry((expiry - start) / slice).or_default() += 1;
        }
        let busiest = *slices.values().max().unwrap();
        let fair_share = KEYS as f64 / (200.0 * jitter).max(1.0);
        if jitter == 0.0 {
            assert!(
                busiest >= KEYS / 2,
                "without jitter they bunch up: {busiest}"
            );
        } else {
            assert!(
                (busiest as f64) <= 1.2 * fair_share,
                "busiest slice {busiest} vs a fair share of {fair_share}"
            );
            assert!(slices.len() >= 19, "spread over ±10 % of the TTL");
        }
    }
}

async fn insert_items(app: &TestApp, n: usize) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&app.database.url)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO items (id, name, description, price, category, stock, created_at, updated_at, version) \
         SELECT 'w' || i, 'warm ' || i, '', 1.0, 'bulk', 1, now(), now(), 1 \
         FROM generate_series(1, $1) AS i",
    )
    .bind(n as i64)
    .execute(&mut conn)
    .await
    .unwrap();
}

/// `fresh_until` of every entry under `pattern`.
async fn cached_expiries(app: &TestApp, pattern: &str) -> Vec<i64> {
    let mut conn = app.redis.conn().await;
    let mut expiries = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let values: Vec<String> = redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .unwrap();
            for value in values {
                let entry: Value = serde_json::from_str(&value).unwrap();
                expiries.push(entry["fresh_until"].as_i64().unwrap());
            }
        }
        if next == 0 {
            return expiries;
        }
        cursor = next;
    }
}

/// Property 7: a key read without pause stays a hit through many TTLs, at
/// one source-of-truth read per TTL; without early refresh it misses at
/// every expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_is_refreshed_before_it_expires() {
    let ttl = Duration::from_secs(1);
    let periods = 4;
    for early_refresh in [0.0, 0.3] {
        let app = TestApp::builder(Backend::Sqlite)
            .config(move |c| {
                c.cache.ttl = ttl;
                c.cache.ttl_jitter = 0.0;
                c.cache.early_refresh = early_refresh;
            })
            .spawn()
            .await;
        assert_eq!(
            header(&app.get_item("1").await, "x-cache-status"),
            Some("MISS")
        );
        let started = Instant::now();
        let mut misses = 0;
        // The load: one read every 10 ms for four TTLs.
        while started.elapsed() < ttl * periods {
            let response = app.get_item("1").await;
            assert_eq!(response.status(), StatusCode::OK);
            if header(&response, "x-cache-status") != Some("HIT") {
                misses += 1;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stats = app.stats().await;
        if early_refresh == 0.0 {
            assert!(misses >= periods - 1, "expiries show as misses: {misses}");
        } else {
            assert_eq!(misses, 0, "every read after the first is a hit");
            let reads = stats["upstream_fetches"].as_u64().unwrap();
            assert!(
                reads <= u64::from(periods) + 1,
                "{reads} source reads for {periods} TTL periods"
            );
            assert!(stats["early_refreshes"].as_u64().unwrap() >= u64::from(periods) - 1);
        }
    }
}
