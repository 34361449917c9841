//! The probe watching our own service: its Redis reads, seen on the wire,
//! against the service's `/stats`. The service runs in this process (its
//! Redis client is this process's), with the near cache off so that every
//! lookup reaches Redis, leases and early refresh off so that the only
//! reads of item keys are the lookups' own `GET` and `MGET`.

use std::time::Duration;

use clap::Parser;
use redis_cache::{Application, Cli, Config};
use serde_json::{Value, json};

use crate::helpers::{Probe, Redis, eventually, own_name};

/// The service in this process, on `redis` and a SQLite file of its own,
/// with `args` on top of the defaults.
pub struct Service {
    pub http: reqwest::Client,
    pub base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

pub async fn start(redis: &Redis, args: &[&str]) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite:{}", dir.path().join("items.db").display());
    let mut argv = vec![
        "redis-cache".to_owned(),
        "--server-port=0".into(),
        "--bind-addr=127.0.0.1".into(),
        format!("--redis-url={}", redis.url()),
        format!("--database-url={database}"),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    let cli = Cli::try_parse_from(argv).unwrap();
    let app = Application::build(Config::from_cli(cli).unwrap())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    Service {
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        base,
        stop,
        server,
        _dir: dir,
    }
}

impl Service {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.server.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gets_seen_on_the_wire_equal_the_services_own_hits_and_misses() {
    let redis = Redis::start();
    let probe = Probe::start(&["--redis-port", &redis.port.to_string()]);
    let service = start(
        &redis,
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
    eventually(
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
    let (http, base) = (service.http.clone(), service.base.clone());

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
    eventually(
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
