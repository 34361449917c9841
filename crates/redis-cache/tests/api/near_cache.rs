//! The near cache (L1) on several instances: hits answered in process,
//! writes visible everywhere within 100 ms, and no stale L1 read after an
//! invalidation was lost (subscription killed, network cut, sequence gap,
//! long Redis outage) or raced a fill.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_cache::invalidation::silence;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, FillGate, TcpProxy, TestApp, body, eventually, header, publish};

/// The heartbeat of the tests of silent senders: short, so that silence is
/// noticed in about a second rather than the default's 3.5 s.
const HEARTBEAT: Duration = Duration::from_millis(200);

/// Three instances on one Redis and one PostgreSQL database.
async fn three() -> [TestApp; 3] {
    let a = TestApp::spawn(Backend::Postgres).await;
    let b = a.peer().spawn().await;
    let c = a.peer().spawn().await;
    [a, b, c]
}

async fn tier(app: &TestApp, id: &str) -> (Option<String>, Option<String>, Value) {
    let response = app.get_item(id).await;
    let status = header(&response, "x-cache-status").map(str::to_owned);
    let tier = header(&response, "x-cache-tier").map(str::to_owned);
    (status, tier, body(response).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_are_answered_in_process_and_counted_by_tier() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    assert_eq!(tier(&app, "1").await.0.as_deref(), Some("MISS"));
    let (status, tier_header, item) = tier(&app, "1").await;
    assert_eq!(
        (status.as_deref(), tier_header.as_deref()),
        (Some("HIT"), Some("L1"))
    );
    assert_eq!(item["name"], "Laptop Pro");

    // Another instance finds it in Redis, then keeps it too.
    let peer = app.peer().spawn().await;
    assert_eq!(tier(&peer, "1").await.1.as_deref(), Some("L2"));
    assert_eq!(tier(&peer, "1").await.1.as_deref(), Some("L1"));

    // Absences too.
    assert_eq!(app.get_item("ghost").await.status(), StatusCode::NOT_FOUND);
    let absent = app.get_item("ghost").await;
    assert_eq!(absent.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&absent, "x-cache-tier"), Some("L1"));

    let batch = app.batch(&["1", "2"]).await;
    assert_eq!(header(&batch, "x-cache-hits"), Some("1"));

    let stats = app.stats().await;
    assert_eq!(
        (stats["l1_hits"].as_u64(), stats["l2_hits"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(stats["hits"], 3, "hits = l1_hits + l2_hits");
    assert_eq!(stats["lookups"], 6);
    assert_eq!(stats["l1"], "active");
    assert_eq!(stats["l1_entries"], 3, "1, ghost and 2");

    let off = app.peer().without_l1().spawn().await;
    tier(&off, "1").await;
    assert_eq!(tier(&off, "1").await.1.as_deref(), Some("L2"));
    assert_eq!(off.stats().await["l1"], "off");
}

/// Updates, deletes and pattern invalidations on one instance reach the
/// near caches of the others; the lag is measured and exposed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_invalidations_reach_every_near_cache() {
    let [a, b, c] = three().await;
    for app in [&b, &c] {
        for id in ["1", "2", "3"] {
            tier(app, id).await;
            assert_eq!(tier(app, id).await.1.as_deref(), Some("L1"));
        }
    }
    let b0 = b.stat("invalidations_received").await;
    let c0 = c.stat("invalidations_received").await;

    let written = body(a.put("1", json!({ "stock": 77 })).await).await;
    assert_eq!(a.delete("2").await.status(), StatusCode::NO_CONTENT);
    let invalidated = a.invalidate(json!({ "pattern": "item:3*" })).await;
    assert_eq!(invalidated.status(), StatusCode::OK);
    for (app, before) in [(&b, b0), (&c, c0)] {
        eventually("three invalidations arrived", || async {
            app.stat("invalidations_received").await == before + 3
        })
        .await;
        let (_, _, item) = tier(app, "1").await;
        assert_eq!(item["version"], written["version"]);
        assert_eq!(app.get_item("2").await.status(), StatusCode::NOT_FOUND);
        assert_ne!(
            tier(app, "3").await.1.as_deref(),
            Some("L1"),
            "evicted by the pattern"
        );
        let lag = &app.stats().await["invalidation_lag"];
        assert_eq!(lag["count"], 3);
        assert!(lag["p99_ms"].as_f64().unwrap() <= 100.0, "{lag}");
    }
}

/// ≥ 1,000 writes spread over three instances while readers on all three
/// read the same ids: no read returns a version older than one whose write
/// was acknowledged more than 100 ms before the read started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_instance_serves_a_superseded_version_100ms_after_its_write() {
    const WRITES: usize = 1_200;
    const IDS: [&str; 3] = ["1", "2", "3"];
    let apps: Arc<[TestApp; 3]> = Arc::new(three().await);
    // (id, version, acknowledged at) of every write.
    let acks: Arc<Mutex<Vec<(usize, i64, Instant)>>> = Arc::default();
    // (id, version read, read started at).
    let reads: Arc<Mutex<Vec<(usize, i64, Instant)>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let mut readers = Vec::new();
    for r in 0..6 {
        let (apps, reads, done) = (apps.clone(), reads.clone(), done.clone());
        readers.push(tokio::spawn(async move {
            let mut n = r;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let id = n % IDS.len();
                let started = Instant::now();
                let read = apps[r % 3].get_item(IDS[id]).await;
                assert_eq!(read.status(), StatusCode::OK);
                let version = body(read).await["version"].as_i64().unwrap();
                reads.lock().unwrap().push((id, version, started));
                n += 1;
            }
        }));
    }
    let mut writers = Vec::new();
    for w in 0..3 {
        let (apps, acks) = (apps.clone(), acks.clone());
        writers.push(tokio::spawn(async move {
            for n in 0..WRITES / 3 {
                let id = (w + n) % IDS.len();
                let written = apps[(w + n) % 3].put(IDS[id], json!({ "stock": n })).await;
                assert_eq!(written.status(), StatusCode::OK);
                let version = body(written).await["version"].as_i64().unwrap();
                acks.lock().unwrap().push((id, version, Instant::now()));
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }

    let acks = std::mem::take(&mut *acks.lock().unwrap());
    let reads = std::mem::take(&mut *reads.lock().unwrap());
    let bound = Duration::from_millis(100);
    let violations: Vec<_> = reads
        .iter()
        .filter(|(id, version, started)| {
            acks.iter().any(|(acked_id, acked, at)| {
                acked_id == id && acked > version && *at + bound < *started
            })
        })
        .collect();
    assert!(reads.len() > 1_000, "only {} reads", reads.len());
    assert!(
        violations.is_empty(),
        "{} stale reads, e.g. {:?}",
        violations.len(),
        &violations[..violations.len().min(5)]
    );
    let l1_hits: u64 = futures::future::join_all(apps.iter().map(|app| app.stat("l1_hits")))
        .await
        .into_iter()
        .sum();
    assert!(l1_hits > 0, "the near caches answered some of the reads");
}

/// The reader's subscription dies while another instance writes: the
/// invalidations sent meanwhile are lost, so the reader flushed its near
/// cache; after it has subscribed again, it serves no old value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_subscription_leaves_no_stale_near_cache_entry() {
    // The reader reaches Redis through a proxy that the test can cut.
    let writer = TestApp::spawn(Backend::Sqlite).await;
    let proxy = TcpProxy::start(writer.redis.port()).await;
    let reader = writer
        .peer()
        .redis_url(format!("redis://127.0.0.1:{}", proxy.port()))
        .spawn()
        .await;
    for id in ["1", "2", "3"] {
        tier(&reader, id).await;
        assert_eq!(tier(&reader, id).await.1.as_deref(), Some("L1"));
    }

    // A network cut: the reader's subscription and link are gone; writes go
    // on elsewhere and their invalidations never reach it.
    proxy.cut();
    eventually("the reader noticed", || async {
        reader.stats().await["l1"] == "bypassed"
    })
    .await;
    let mut latest = Vec::new();
    for id in ["1", "2", "3"] {
        latest.push(body(writer.put(id, json!({ "stock": 500 })).await).await["version"].clone());
    }
    proxy.restore();
    reader.wait_until_cache_ready().await;
    for (id, version) in ["1", "2", "3"].into_iter().zip(&latest) {
        let (status, _, item) = tier(&reader, id).await;
        assert_eq!(&item["version"], version, "item {id} ({status:?})");
    }
    assert!(reader.stat("l1_flushes").await >= 1);

    // The same with only the subscription killed (`CLIENT KILL TYPE pubsub`),
    // writes continuing throughout.
    for id in ["1", "2", "3"] {
        tier(&reader, id).await;
    }
    let flushes = reader.stat("l1_flushes").await;
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async::<i64>(&mut writer.redis.conn().await)
        .await
        .unwrap();
    let mut latest = Vec::new();
    for round in 0..20 {
        for id in ["1", "2", "3"] {
            let written = writer.put(id, json!({ "stock": round })).await;
            latest.push((id, body(written).await["version"].clone()));
        }
    }
    reader.wait_until_cache_ready().await;
    assert!(
        reader.stat("l1_flushes").await > flushes,
        "the loss flushed L1"
    );
    for (id, version) in latest.iter().rev().take(3) {
        let (_, _, item) = tier(&reader, id).await;
        assert_eq!(&item["version"], version, "item {id}");
    }
}

/// A gap in a sender's sequence numbers means invalidations were lost: the
/// near cache is flushed. In-order messages and messages from other
/// publishers evict only what they name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_gap_flushes_the_near_cache() {
    // "peer-x" never sends a heartbeat: with the default one it would be
    // taken for lost (and the near cache flushed) after 3.5 s of silence,
    // which a loaded machine can reach before the gap is even sent.
    let app = TestApp::builder(Backend::Sqlite)
        .config(|c| c.cache.heartbeat = Duration::from_secs(60))
        .spawn()
        .await;
    for id in ["1", "2"] {
        tier(&app, id).await;
    }
    let message =
        |seq: u64| json!({ "key": "item:99", "source": "peer-x", "seq": seq, "timestamp": "" });
    for seq in [7, 8] {
        publish(&app, message(seq)).await;
    }
    publish(&app, json!({ "key": "item:98" })).await;
    eventually("three messages received", || async {
        app.stat("invalidations_received").await == 3
    })
    .await;
    assert_eq!(
        tier(&app, "1").await.1.as_deref(),
        Some("L1"),
        "nothing lost yet"
    );
    assert_eq!(app.stat("invalidation_gaps").await, 0);

    publish(&app, message(11)).await;
    eventually("the gap was seen", || async {
        app.stat("invalidation_gaps").await == 1
    })
    .await;
    assert_eq!(tier(&app, "1").await.1.as_deref(), Some("L2"), "flushed");
    assert_eq!(tier(&app, "2").await.1.as_deref(), Some("L2"));
    assert_eq!(app.stat("l1_flushes").await, 1);
}

/// Redis down for 30 s, longer than any client library's reconnect budget:
/// within 5 s of its return the subscription is back and invalidations reach
/// the near caches again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_flow_again_within_5s_of_a_30s_outage() {
    let writer = TestApp::spawn(Backend::Sqlite).await;
    let reader = writer.peer().spawn().await;
    writer.redis.kill();
    eventually("the reader noticed", || async {
        reader.stats().await["l1"] == "bypassed"
    })
    .await;
    // The outage itself, not a wait for an event.
    tokio::time::sleep(Duration::from_secs(30)).await;
    writer.redis.restart();
    let back = tokio::time::timeout(Duration::from_secs(5), async {
        reader.wait_until_cache_ready().await;
        writer.wait_until_cache_ready().await;
    })
    .await;
    assert!(back.is_ok(), "subscriptions not back within 5 s of redis");

    tier(&reader, "1").await;
    assert_eq!(tier(&reader, "1").await.1.as_deref(), Some("L1"));
    let received = reader.stat("invalidations_received").await;
    let written = body(writer.put("1", json!({ "stock": 5 })).await).await;
    eventually("the invalidation arrived", || async {
        reader.stat("invalidations_received").await > received
    })
    .await;
    assert_eq!(tier(&reader, "1").await.2["version"], written["version"]);
}

/// An invalidation that arrives while a lookup is about to keep what it read
/// from Redis wins: 1,000 times, the old value never lands in the near cache.
/// (Without the generation check in `NearCache::insert`, every round would
/// leave the old version in L1 for `L1_TTL`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_beats_a_near_cache_fill_in_flight() {
    let writer = TestApp::spawn(Backend::Sqlite).await;
    let reader = writer.peer().spawn().await;
    let id = redis_cache::domain::ItemId::parse("1").unwrap();
    writer.get_item("1").await;
    let gate = FillGate::install_before_l1(&reader.catalog);
    let mut stale = 0;
    for round in 0..1_000 {
        // Redis holds the current version; the reader reads it there and
        // stops just before keeping it in L1.
        let lookup = reader.spawn_get("1");
        gate.held(1).await;
        let received = reader.stat("invalidations_received").await;
        let written = body(writer.put("1", json!({ "stock": round })).await).await;
        eventually("the invalidation reached the reader", || async {
            reader.stat("invalidations_received").await > received
        })
        .await;
        gate.release();
        assert_eq!(lookup.await.unwrap().0, StatusCode::OK);
        let kept = reader.catalog.l1().get(&id).and_then(|entry| entry.value);
        if kept.is_some_and(|item| Some(item.version.0) != written["version"].as_i64()) {
            stale += 1;
            reader.catalog.l1().invalidate(&id);
        }
        // Redis holds the item again for the next round.
        writer.get_item("1").await;
    }
    assert_eq!(stale, 0, "old values left in the near cache");
}

/// Several instances on one SQLite file are safe: SQLite's own locking
/// serialises their writes, and the shared Redis keeps them consistent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_a_sqlite_file_write_safely() {
    let a = TestApp::spawn(Backend::Sqlite).await;
    let b = a.peer().spawn().await;
    let writes = (0..200).map(|n| {
        let app = if n % 2 == 0 { &a } else { &b };
        app.put("1", json!({ "stock": n }))
    });
    for response in futures::future::join_all(writes).await {
        assert_eq!(response.status(), StatusCode::OK);
    }
    for app in [&a, &b] {
        eventually("both see the last version", || async {
            tier(app, "1").await.2["version"] == 201
        })
        .await;
    }
}

/// What heartbeats reveal: a last message that never arrived (the heartbeat
/// is ahead of it), and a sender that fell silent without saying goodbye.
/// A goodbye keeps a clean stop from flushing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_reveal_lost_messages_and_silent_senders() {
    let app = TestApp::builder(Backend::Sqlite)
        .config(|c| c.cache.heartbeat = HEARTBEAT)
        .spawn()
        .await;
    let warm = || async {
        tier(&app, "1").await;
        assert_eq!(tier(&app, "1").await.1.as_deref(), Some("L1"));
    };
    let started = redis_cache::cache::now_ms() - 60_000;
    let message = |source: &str, seq: u64| json!({ "key": "item:99", "source": source, "seq": seq, "started": started });
    let beat = |source: &str, seq: u64, bye: bool| json!({ "source": source, "seq": seq, "started": started, "heartbeat": true, "bye": bye });

    warm().await;
    publish(&app, message("peer-a", 5)).await;
    publish(&app, beat("peer-a", 5, false)).await;
    publish(&app, beat("peer-a", 6, false)).await;
    eventually(
        "the heartbeat ahead of the last message was a gap",
        || async { app.stat("invalidation_gaps").await == 1 },
    )
    .await;
    assert_eq!(tier(&app, "1").await.1.as_deref(), Some("L2"), "flushed");

    // peer-a now falls silent; peer-b says goodbye.
    warm().await;
    publish(&app, message("peer-b", 1)).await;
    publish(&app, beat("peer-b", 1, true)).await;
    eventually("peer-a's silence was noticed", || async {
        app.stat("invalidation_gaps").await == 2
    })
    .await;
    assert_eq!(tier(&app, "1").await.1.as_deref(), Some("L2"), "flushed");
    warm().await;
    let gaps = app.stat("invalidation_gaps").await;
    // Wait as long as silence takes to be noticed, twice over: peer-b said
    // goodbye, so nothing happens.
    tokio::time::sleep(silence(HEARTBEAT) * 2).await;
    assert_eq!(app.stat("invalidation_gaps").await, gaps);
    assert_eq!(tier(&app, "1").await.1.as_deref(), Some("L1"));
}

/// Writes from many tasks of one instance reach the others in order: no
/// false gaps, no needless flushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_of_one_instance_arrive_in_order() {
    let writer = TestApp::spawn(Backend::Sqlite).await;
    let reader = writer.peer().spawn().await;
    let received = reader.stat("invalidations_received").await;
    let writes = (0..400).map(|n| writer.put(["1", "2", "3"][n % 3], json!({ "stock": n })));
    for response in futures::future::join_all(writes).await {
        assert_eq!(response.status(), StatusCode::OK);
    }
    eventually("every invalidation arrived", || async {
        reader.stat("invalidations_received").await == received + 400
    })
    .await;
    assert_eq!(reader.stat("invalidation_gaps").await, 0);
    assert_eq!(reader.stat("l1_flushes").await, 0);
}

/// After a lost subscription, a lookup never joins a load that started
/// before: that load may carry a value whose invalidation was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_lost_subscription_no_lookup_joins_an_older_load() {
    let writer = TestApp::spawn(Backend::Sqlite).await;
    let reader = writer.peer().spawn().await;
    let gate = FillGate::install(&reader.catalog);
    let old_load = reader.spawn_get("1");
    gate.held(1).await;
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async::<i64>(&mut writer.redis.conn().await)
        .await
        .unwrap();
    let written = body(writer.put("1", json!({ "stock": 9 })).await).await;
    eventually("the reader lost its subscription", || async {
        reader.stat("l1_flushes").await >= 1 || reader.stats().await["l1"] == "bypassed"
    })
    .await;
    reader.wait_until_cache_ready().await;
    gate.let_new_loads_pass();
    let read = tokio::time::timeout(Duration::from_secs(10), reader.get_item("1"))
        .await
        .expect("the lookup joined the load held since before the loss");
    assert_eq!(body(read).await["version"], written["version"]);
    gate.remove();
    assert_eq!(old_load.await.unwrap().0, StatusCode::OK);
}

/// Two processes given the same INSTANCE_ID still invalidate each other's
/// near cache (and the service warns about it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_an_id_still_hear_each_other() {
    let a = TestApp::builder(Backend::Sqlite)
        .config(|c| c.instance_id = "same".into())
        .spawn()
        .await;
    let b = a
        .peer()
        .config(|c| c.instance_id = "same".into())
        .spawn()
        .await;
    tier(&b, "1").await;
    assert_eq!(tier(&b, "1").await.1.as_deref(), Some("L1"));
    let received = b.stat("invalidations_received").await;
    let written = body(a.put("1", json!({ "stock": 4 })).await).await;
    eventually("b heard a", || async {
        b.stat("invalidations_received").await > received
    })
    .await;
    assert_eq!(tier(&b, "1").await.2["version"], written["version"]);
}

/// A hot key held in L1 near its expiry starts one refresh, not one per hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_near_cache_entry_starts_one_refresh() {
    let app = TestApp::builder(Backend::Sqlite)
        .config(|c| {
            c.cache.ttl = Duration::from_secs(2);
            c.cache.ttl_jitter = 0.0;
            c.cache.early_refresh = 0.5;
        })
        .spawn()
        .await;
    tier(&app, "1").await;
    let before = app.catalog.status().redis_round_trips;
    let started = Instant::now();
    let mut hits = 0;
    // Continuous reads through one refresh window and past the old expiry.
    while started.elapsed() < Duration::from_millis(2_500) {
        if tier(&app, "1").await.0.as_deref() == Some("HIT") {
            hits += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let trips = app.catalog.status().redis_round_trips - before;
    assert!(hits > 100, "{hits} hits");
    assert!(app.stat("early_refreshes").await >= 1);
    assert!(trips < 20, "{trips} redis round trips for {hits} hits");
}

/// A sender that crashed and came back under the same instance id within a
/// few seconds is another sender: the one that died still falls silent, and
/// whatever it could not send is covered by a flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_restarted_under_the_same_id_still_falls_silent() {
    let app = TestApp::builder(Backend::Sqlite)
        .config(|c| c.cache.heartbeat = HEARTBEAT)
        .spawn()
        .await;
    tier(&app, "1").await;
    let old = redis_cache::cache::now_ms() - 60_000;
    let new = redis_cache::cache::now_ms();
    publish(
        &app,
        json!({ "key": "item:99", "source": "web-0", "seq": 5, "started": old }),
    )
    .await;
    // The new process keeps beating; the old one is never heard again.
    let beating = tokio::spawn({
        let redis = app.redis.clone();
        async move {
            let mut conn = redis.conn().await;
            loop {
                let beat =
                    json!({ "source": "web-0", "seq": 0, "started": new, "heartbeat": true });
                let _: Result<i64, _> = redis::cmd("PUBLISH")
                    .arg("cache:invalidate")
                    .arg(beat.to_string())
                    .query_async(&mut conn)
                    .await;
                tokio::time::sleep(HEARTBEAT).await;
            }
        }
    });
    eventually("the process that died fell silent", || async {
        app.stat("invalidation_gaps").await == 1
    })
    .await;
    tier(&app, "1").await;
    assert_eq!(tier(&app, "1").await.1.as_deref(), Some("L1"));
    // Long enough for a second, wrong, verdict on the live one.
    tokio::time::sleep(silence(HEARTBEAT) * 2).await;
    assert_eq!(
        app.stat("invalidation_gaps").await,
        1,
        "the live one is heard"
    );
    beating.abort();
}

/// When the shared Redis connection breaks, Redis may be frozen or cut off
/// before the subscription notices: the near cache is flushed and bypassed
/// until the connection is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_redis_connection_suspends_the_near_cache() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    tier(&app, "1").await;
    assert_eq!(tier(&app, "1").await.1.as_deref(), Some("L1"));
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async::<i64>(&mut app.redis.conn().await)
        .await
        .unwrap();
    eventually("the near cache was flushed", || async {
        app.stat("l1_flushes").await == 1
    })
    .await;
    eventually("back in use once the connection is", || async {
        app.stats().await["l1"] == "active"
    })
    .await;
    tier(&app, "1").await;
    assert_eq!(tier(&app, "1").await.1.as_deref(), Some("L1"));
    assert_eq!(
        app.stats().await["subscriber"],
        json!(null),
        "the subscription was not touched"
    );
}
