//! The probe watching our own service: its Redis reads, seen on the wire,
//! against the service's `/stats`. The service runs in this process (its
//! Redis client is this process's), with the near cache off so that every
//! lookup reaches Redis, leases and early refresh off so that the only
//! reads of item keys are the lookups' own `GET` and `MGET`.

use std::time::Duration;

use serde_json::{Value, json};
use test_support::Service;

use crate::helpers::{Probe, Redis, eventually_blocking, own_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gets_seen_on_the_wire_equal_the_services_own_hits_and_misses() {
    let redis = Redis::start();
    let probe = Probe::start(&["--redis-port", &redis.port().to_string()]);
    let service = Service::start(
        &redis.url(),
        &[
            "--l1-capacity=0",
            "--cache-leases=false",
            "--early-refresh=0",
            "--redis-info-interval=0s",
        ],
    )
    .await;
    // At start the service tries each command it uses, on a key no item
    // can have: a GET of it, and an MGET of it and its lease, are three
    // misses on the wire that are no lookup.
    let lookups = |result: &str| {
        probe.sum(
            "obi_redis_key_lookups_total",
            &[("service_name", &own_name()), ("result", result)],
        ) as u64
    };
    let permission_check = (0, 3);
    eventually_blocking(
        "the permission check on the wire",
        Duration::from_secs(10),
        || {
            let seen = (lookups("hit"), lookups("miss"));
            if seen == permission_check {
                Ok(())
            } else {
                Err(seen)
            }
        },
    );
    let (http, base) = (service.http(), service.url(""));

    // The original walkthrough.
    let get = |id: String| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            http.get(format!("{base}/items/{id}"))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(get("1".into()).await, 200);
    assert_eq!(get("1".into()).await, 200);
    let batch = http
        .post(format!("{base}/items/batch"))
        .json(&json!({ "ids": ["1", "2", "3"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(batch.status(), 200);
    let created = http
        .post(format!("{base}/items"))
        .json(&json!({ "id": "100", "name": "Product", "price": 99.99, "category": "test", "stock": 5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(get("100".into()).await, 200);
    let updated = http
        .put(format!("{base}/items/100"))
        .json(&json!({ "name": "Updated Product", "price": 149.99 }))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), 200);
    assert_eq!(get("100".into()).await, 200);
    let deleted = http
        .delete(format!("{base}/items/100"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(get("100".into()).await, 404);
    for body in [json!({ "key": "item:1" }), json!({ "pattern": "item:*" })] {
        let invalidated = http
            .post(format!("{base}/cache/invalidate"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(invalidated.status(), 200);
    }

    // A short load: eight at a time over a few ids, some unknown.
    for round in 0..50 {
        let requests = (0..8).map(|i| get(((round * 8 + i) % 13 + 1).to_string()));
        futures::future::join_all(requests).await;
    }

    let stats: Value = http
        .get(format!("{base}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let counted = (
        stats["l2_hits"].as_u64().unwrap(),
        stats["misses"].as_u64().unwrap(),
    );
    assert!(counted.0 > 300 && counted.1 > 10, "{stats}");
    eventually_blocking(
        "the wire to agree with /stats",
        Duration::from_secs(10),
        || {
            let seen = (
                lookups("hit") - permission_check.0,
                lookups("miss") - permission_check.1,
            );
            if seen == counted {
                Ok(())
            } else {
                Err((seen, counted))
            }
        },
    );
    service.stop().await;
}
