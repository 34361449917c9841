//! Values written are never hidden by values read before them: no stale sets
//! (property 3), read-your-writes (property 4), and absences that end the
//! moment the id is created (property 5, second half).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, FillGate, TestApp, body, eventually, header, postgres};

/// The version of the item cached under `key`, if any.
async fn cached_version(app: &TestApp, key: &str) -> Option<i64> {
    let raw = app.redis_get(key).await?;
    let entry: Value = serde_json::from_str(&raw).unwrap();
    entry["item"]["version"].as_i64()
}

/// Property 3. The reader reads the source of truth, then a writer on
/// another instance commits and returns, then the reader fills: with leases
/// off the old value lands every time; with leases it never does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_that_read_before_a_write_never_lands_after_it() {
    for (leases, rounds) in [(false, 50), (true, 1000)] {
        // About Redis: without leases the stale fill would also sit in the
        // reader's near cache until the write's invalidation arrives, and
        // answer the next round's lookup before it reaches the gate.
        let reader = TestApp::builder(Backend::Sqlite)
            .without_l1()
            .config(move |c| c.cache.leases = leases)
            .spawn()
            .await;
        let writer = reader
            .peer()
            .config(move |c| c.cache.leases = leases)
            .spawn()
            .await;
        let gate = FillGate::install(&reader.catalog);
        let mut stale = 0;
        for round in 0..rounds {
            // Start every round cold (without leases the last round's stale
            // value would otherwise answer as a hit).
            redis::cmd("UNLINK")
                .arg("item:1")
                .query_async::<()>(&mut reader.redis.conn().await)
                .await
                .unwrap();
            let lookup = reader.spawn_get("1");
            gate.held(1).await;
            let written = writer.put("1", json!({ "stock": round })).await;
            assert_eq!(written.status(), StatusCode::OK);
            let version = body(written).await["version"].as_i64().unwrap();
            gate.release();
            assert_eq!(lookup.await.unwrap().0, StatusCode::OK);
            if cached_version(&reader, "item:1")
                .await
                .is_some_and(|v| v < version)
            {
                stale += 1;
            }
        }
        if leases {
            assert_eq!(stale, 0, "stale values left in Redis after {rounds} rounds");
        } else {
            assert_eq!(
                stale, rounds,
                "without leases the stale fill lands every time"
            );
        }
    }
}

/// A voided fill's value is never an answer: the reader reads again, and if
/// that read fails it says so (503) rather than return the value the write
/// replaced, fresh or stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voided_fill_is_not_served_when_the_second_read_fails() {
    let app = TestApp::builder(Backend::Postgres)
        .without_l1()
        .config(|c| c.cache.failsafe_throttle = Duration::ZERO)
        .spawn()
        .await;
    // Redis holds version 1 past its freshness: fail-safe would serve it.
    let v1 = body(app.get_item("1").await).await;
    let now = redis_cache::cache::now_ms();
    let stale = json!({ "fetched_at": now - 10_000, "fresh_until": now - 5_000, "item": v1 });
    app.redis_set("item:1", &stale.to_string()).await;
    let gate = FillGate::install(&app.catalog);
    let reader = app.spawn_get("1");
    gate.held(1).await;
    assert_eq!(
        app.put("1", json!({ "stock": 7 })).await.status(),
        StatusCode::OK
    );
    let database = postgres::refuse_connections(&app.database.url).await;
    gate.remove();
    let (status, cache, answer) = reader.await.unwrap();
    assert_eq!(
        (status, cache.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, ""),
        "neither the voided read nor the stale entry older than the write: {answer}"
    );
    assert_eq!(app.redis_get("item:1").await, None, "nothing was filled");
    postgres::allow_connections(&database).await;
    let after = app.get_item("1").await;
    assert_eq!(header(&after, "x-cache-status"), Some("MISS"));
    assert_eq!(body(after).await["stock"], 7);
}

/// Property 4, first the interleaving that breaks it without leases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_after_a_write_returns_that_write_even_with_a_slow_reader_around() {
    for leases in [false, true] {
        let app = TestApp::builder(Backend::Sqlite)
            .config(move |c| c.cache.leases = leases)
            .spawn()
            .await;
        let gate = FillGate::install(&app.catalog);
        let slow_reader = app.spawn_get("1");
        gate.held(1).await;
        let written = body(app.put("1", json!({ "stock": 99 })).await).await;
        gate.release();
        slow_reader.await.unwrap();
        gate.remove();
        let read = body(app.get_item("1").await).await;
        if leases {
            assert_eq!(read["version"], written["version"]);
        } else {
            assert!(
                read["version"].as_i64() < written["version"].as_i64(),
                "stale read without leases"
            );
        }
    }
}

/// Across instances: a batch on A waits for C's fill of item 1 and then
/// loads item 2 slowly. Item 1's answer is decided as soon as C's fill is
/// seen, so a lookup on A that starts after a later write of item 1 (on B)
/// does not join the batch's load of it and get the value from before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_after_a_write_does_not_join_a_load_decided_before_it() {
    let a = TestApp::spawn(Backend::Sqlite).await;
    let b = a.peer().spawn().await;
    let c = a.peer().spawn().await;
    let gate_a = FillGate::install_for(&a.catalog, &["2"]);
    let gate_c = FillGate::install(&c.catalog);
    let lease_holder = c.spawn_get("1");
    gate_c.held(1).await;
    let batch = tokio::spawn({
        let (http, url) = (a.http.clone(), a.url("/items/batch"));
        async move {
            let ids = json!({ "ids": ["1", "2"] });
            http.post(url).json(&ids).send().await.unwrap().status()
        }
    });
    // A waits for C's fill of item 1; then its load of item 2 stops at A's gate.
    gate_c.remove();
    assert_eq!(lease_holder.await.unwrap().0, StatusCode::OK);
    gate_a.held(1).await;

    let written = body(b.put("1", json!({ "stock": 42 })).await).await;
    // Joining the batch's load would wait for the held load of item 2.
    let read = tokio::time::timeout(Duration::from_secs(10), a.get_item("1"))
        .await
        .expect("the lookup joined the batch's load of item 1, decided before the write");
    let read = body(read).await;
    assert_eq!(
        read["version"], written["version"],
        "A served a value from before the write"
    );
    gate_a.remove();
    assert_eq!(batch.await.unwrap(), StatusCode::OK);
}

/// Property 4 under load: 10,000 operations, writers checking that their
/// next read sees their write (or a later one), readers loading concurrently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_operations_without_a_stale_read_of_ones_own_write() {
    let app = Arc::new(TestApp::spawn(Backend::Postgres).await);
    let ids = ["1", "2", "3"];
    let writers_done = Arc::new(AtomicUsize::new(0));
    // Lookups made, counted by the clients, to check the server's count.
    let lookups = Arc::new(AtomicUsize::new(0));
    let violations = Arc::new(AtomicUsize::new(0));
    const WRITERS: usize = 8;
    const PAIRS: usize = 625; // 8 × 625 × (PUT + GET) = 10,000 operations
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (app, violations, done) = (app.clone(), violations.clone(), writers_done.clone());
        let lookups = lookups.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..PAIRS {
                let id = ids[(w + n) % ids.len()];
                let written = app.put(id, json!({ "stock": n })).await;
                assert_eq!(written.status(), StatusCode::OK);
                let version = body(written).await["version"].as_i64().unwrap();
                let read = body(app.get_item(id).await).await;
                lookups.fetch_add(1, Ordering::Relaxed);
                if read["version"].as_i64().unwrap() < version {
                    violations.fetch_add(1, Ordering::Relaxed);
                }
            }
            done.fetch_add(1, Ordering::Relaxed);
        }));
    }
    for r in 0..2 {
        let (app, done, lookups) = (app.clone(), writers_done.clone(), lookups.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = r;
            while done.load(Ordering::Relaxed) < WRITERS {
                assert_eq!(
                    app.get_item(ids[n % ids.len()]).await.status(),
                    StatusCode::OK
                );
                assert_eq!(app.batch(&ids).await.status(), StatusCode::OK);
                lookups.fetch_add(1 + ids.len(), Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(violations.load(Ordering::Relaxed), 0);
    let stats = app.stats().await;
    assert_eq!(stats["lookups"], lookups.load(Ordering::Relaxed) as u64);
    assert_eq!(
        stats["hits"].as_u64().unwrap() + stats["misses"].as_u64().unwrap(),
        stats["lookups"].as_u64().unwrap()
    );
}

/// Property 5, second half: a cached absence ends with the create. On the
/// instance that created the id, at once; in Redis, at once; on another
/// instance, as soon as the create's invalidation reaches it (its near cache
/// may hold the absence until then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_id_is_visible_at_once_despite_its_cached_absence() {
    let reader = TestApp::spawn(Backend::Sqlite).await;
    let writer = reader.peer().spawn().await;
    let mut violations = 0;
    for i in 0..100 {
        let id = format!("new-{i}");
        assert_eq!(reader.get_item(&id).await.status(), StatusCode::NOT_FOUND);
        let absent = reader.get_item(&id).await;
        assert_eq!(absent.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            absent.headers()["x-cache-status"],
            "HIT",
            "the absence is cached"
        );
        if i % 2 == 0 {
            reader.create_ok(&id, "fresh").await;
        } else {
            let received = reader.stat("invalidations_received").await;
            writer.create_ok(&id, "fresh").await;
            // Written through: Redis holds it already; the reader's near
            // cache still has the absence until the invalidation arrives.
            assert_eq!(
                cached_version(&reader, &format!("item:{id}")).await,
                Some(1)
            );
            eventually("the create's invalidation reached the reader", || async {
                reader.stat("invalidations_received").await > received
            })
            .await;
        }
        if reader.get_item(&id).await.status() != StatusCode::OK {
            violations += 1;
        }
    }
    assert_eq!(violations, 0);
}

/// A create writes the item through to Redis: the next read is a hit, on
/// this instance and on another one, and the key exists in Redis, as the
/// original example's own tests expect. A cached absence of the id is
/// replaced at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_item_is_written_through_and_read_back_as_a_hit() {
    let app = TestApp::builder(Backend::Sqlite).without_l1().spawn().await;
    let peer = app.peer().spawn().await;
    assert_eq!(app.get_item("new").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(peer.get_item("new").await.status(), StatusCode::NOT_FOUND);
    let created = app.create_ok("new", "written through").await;
    assert_eq!(cached_version(&app, "item:new").await, Some(1));
    for instance in [&app, &peer] {
        let read = instance.get_item("new").await;
        assert_eq!(read.status(), StatusCode::OK);
        assert_eq!(header(&read, "x-cache-status"), Some("HIT"));
        assert_eq!(body(read).await, created);
    }
    assert_eq!(app.stat("upstream_fetches").await, 1, "only the first 404");
}

/// The write-through cannot land over a newer value: its lease is taken
/// before the commit, so an update that commits and invalidates while the
/// create's fill is held voids it. Every round leaves Redis without the
/// created version, and the next read returns the update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_never_lands_over_a_later_write() {
    let creator = TestApp::builder(Backend::Sqlite).without_l1().spawn().await;
    let writer = creator.peer().without_l1().spawn().await;
    let gate = FillGate::install(&creator.catalog);
    for round in 0..100 {
        let id = format!("raced-{round}");
        let create = {
            let (http, url) = (creator.http.clone(), creator.url("/items"));
            let item = json!({ "id": id, "name": "created" });
            tokio::spawn(async move { http.post(url).json(&item).send().await.unwrap().status() })
        };
        gate.held(1).await;
        let updated = writer.put(&id, json!({ "name": "updated" })).await;
        assert_eq!(updated.status(), StatusCode::OK);
        gate.release();
        assert_eq!(create.await.unwrap(), StatusCode::CREATED);
        assert_ne!(
            cached_version(&creator, &format!("item:{id}")).await,
            Some(1),
            "round {round}: the created version landed after the update"
        );
        // From the writer: every load of the creator stops at the gate.
        assert_eq!(body(writer.get_item(&id).await).await["name"], "updated");
    }
}
