//! Stampede protection: concurrent lookups of a cold key cost one
//! source-of-truth read, in one process (coalescing) and across instances
//! (leases). Each test first runs with the mechanism switched off and shows
//! the stampede, then with it on.

use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;

use crate::helpers::{Backend, FillGate, TestApp, eventually};

/// Property 1, in one process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_of_a_cold_key_share_one_load() {
    for coalescing in [false, true] {
        let app = TestApp::builder(Backend::Sqlite)
            .config(move |c| {
                c.cache.coalescing = coalescing;
                // Leases would also stop the stampede; this is about coalescing.
                c.cache.leases = coalescing;
            })
            .spawn()
            .await;
        let gate = FillGate::install(&app.catalog);
        let lookups: Vec<_> = (0..100).map(|_| app.spawn_get("1")).collect();
        if coalescing {
            eventually("99 lookups joined the first one's load", || async {
                app.stat("coalesced").await == 99
            })
            .await;
        } else {
            // Every lookup read the source of truth and is waiting to fill.
            gate.held(100).await;
        }
        gate.remove();
        for (status, cache, item) in join_all(lookups).await.into_iter().map(Result::unwrap) {
            assert_eq!((status, cache.as_str()), (StatusCode::OK, "MISS"));
            assert_eq!(item["name"], "Laptop Pro");
        }
        let stats = app.stats().await;
        let expected_reads = if coalescing { 1 } else { 100 };
        assert_eq!(
            stats["upstream_fetches"], expected_reads,
            "coalescing={coalescing}"
        );
        if coalescing {
            assert_eq!(stats["fills"], 1);
            assert_eq!(stats["coalesced"], 99);
        }
        assert_eq!(stats["lookups"], 100);
        assert_eq!(stats["misses"], 100);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_lookups_join_single_lookups_of_the_same_ids() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let gate = FillGate::install(&app.catalog);
    let single = app.spawn_get("2");
    gate.held(1).await;
    let batch = tokio::spawn({
        let (http, url) = (app.http.clone(), app.url("/items/batch"));
        async move {
            let body = serde_json::json!({ "ids": ["2", "3"] });
            http.post(url).json(&body).send().await.unwrap()
        }
    });
    gate.held(2).await;
    gate.remove();
    assert_eq!(single.await.unwrap().0, StatusCode::OK);
    let batch = batch.await.unwrap();
    assert_eq!(batch.status(), StatusCode::OK);
    let loads: Vec<Vec<String>> = gate
        .loads()
        .iter()
        .map(|ids| ids.iter().map(ToString::to_string).collect())
        .collect();
    assert_eq!(
        loads,
        [vec!["2"], vec!["3"]],
        "the batch loaded only 3 and joined 2"
    );
    let stats = app.stats().await;
    assert_eq!(stats["coalesced"], 1);
    assert_eq!(stats["upstream_fetches"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_hangs_up_does_not_cancel_the_shared_load() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let gate = FillGate::install(&app.catalog);
    let leader = app.spawn_get("1");
    gate.held(1).await;
    let follower = app.spawn_get("1");
    eventually("the second lookup joined", || async {
        app.stat("coalesced").await == 1
    })
    .await;
    // The first requester's client gives up; its handler is dropped.
    leader.abort();
    gate.remove();
    let (status, _, item) = follower.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(item["name"], "Laptop Pro");
    eventually("the load it started still filled Redis", || async {
        app.redis_get("item:1").await.is_some()
    })
    .await;
    assert_eq!(app.stat("upstream_fetches").await, 1);
}

/// Three instances on one Redis and one database.
async fn three_instances(leases: bool, lease_ttl: Duration) -> [TestApp; 3] {
    let tweak = move |c: &mut redis_cache::Config| {
        c.cache.leases = leases;
        c.cache.lease_ttl = lease_ttl;
    };
    let a = TestApp::builder(Backend::Postgres)
        .config(tweak)
        .spawn()
        .await;
    let b = a.peer().config(tweak).spawn().await;
    let c = a.peer().config(tweak).spawn().await;
    [a, b, c]
}

async fn sum(apps: &[TestApp], counter: &str) -> u64 {
    let mut total = 0;
    for app in apps {
        total += app.stat(counter).await;
    }
    total
}

/// Property 2, across instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_lookups_across_instances_read_the_source_once() {
    for leases in [false, true] {
        let apps = three_instances(leases, Duration::from_secs(30)).await;
        let gates: Vec<_> = apps
            .iter()
            .map(|app| FillGate::install(&app.catalog))
            .collect();
        let lookups: Vec<_> = (0..1000).map(|i| apps[i % 3].spawn_get("1")).collect();
        eventually(
            "every lookup but one per instance joined a load",
            || async { sum(&apps, "coalesced").await == 997 },
        )
        .await;
        if !leases {
            for gate in &gates {
                gate.held(1).await;
            }
        }
        for gate in &gates {
            gate.remove();
        }
        for (status, _, item) in join_all(lookups).await.into_iter().map(Result::unwrap) {
            assert_eq!(status, StatusCode::OK);
            assert_eq!(item["name"], "Laptop Pro");
        }
        let reads = sum(&apps, "upstream_fetches").await;
        if leases {
            assert_eq!(reads, 1, "one read for 1,000 lookups on 3 instances");
            assert_eq!(sum(&apps, "lease_waits").await, 2);
        } else {
            assert_eq!(reads, 3, "without leases, one read per instance");
        }
        assert_eq!(sum(&apps, "lookups").await, 1000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lease_holder_is_taken_over_when_its_lease_expires() {
    let [a, b, c] = three_instances(true, Duration::from_millis(500)).await;
    // A takes the lease, reads, and never fills: as if it died mid-load.
    let stuck_gate = FillGate::install(&a.catalog);
    let stuck = a.spawn_get("1");
    stuck_gate.held(1).await;
    let lookups: Vec<_> = (0..999)
        .map(|i| {
            if i % 2 == 0 {
                b.spawn_get("1")
            } else {
                c.spawn_get("1")
            }
        })
        .collect();
    for (status, _, item) in join_all(lookups).await.into_iter().map(Result::unwrap) {
        assert_eq!(status, StatusCode::OK);
        assert_eq!(item["name"], "Laptop Pro");
    }
    let apps = [a, b, c];
    assert_eq!(
        sum(&apps, "upstream_fetches").await,
        2,
        "the dead holder's read and one takeover"
    );
    let filled = apps[0].redis_get("item:1").await.unwrap();
    // The holder wakes up: its lease is gone, so its fill is refused.
    stuck_gate.remove();
    assert_eq!(stuck.await.unwrap().0, StatusCode::OK);
    assert_eq!(apps[0].redis_get("item:1").await.unwrap(), filled);
}
