//! The `redis-cache` binary itself: configuration errors, `--help`, and
//! graceful shutdown on signals.

use std::process::{Child, Stdio};
use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::binary::{
    binary, exit_code, listening, run, signal, spawn_in, start, start_in, start_logging,
    upstream_fetches,
};
use crate::helpers::{
    Backend, Redis, TestApp, TestDatabase, UnreachablePostgres, body, eventually, kill_with_parent,
};

#[test]
fn bad_settings_exit_non_zero_with_one_line_naming_the_variable() {
    let cases: [(&str, &str); 8] = [
        ("CACHE_TTL", "soon"),
        ("REDIS_TIMEOUT", "-5ms"),
        ("SERVER_PORT", "99999"),
        ("BIND_ADDR", "localhost:80"),
        ("CACHE_KEY_PREFIX", "it*m:"),
        ("REDIS_URL", "http://admin:s3cr3t-pw@cache:6379"),
        ("DATABASE_URL", "mysql://root:s3cr3t-pw@db/items"),
        ("LOG_FORMAT", "xml"),
    ];
    for (variable, value) in cases {
        let (code, stdout, stderr) = run(&[], &[(variable, value)]);
        assert_eq!(code, 2, "{variable}={value}: {stderr}");
        assert!(stdout.is_empty(), "{variable}: nothing on stdout");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{variable}: one line, got {stderr:?}"
        );
        assert!(
            stderr.contains(variable),
            "{variable} not named in {stderr:?}"
        );
        assert!(!stderr.contains("s3cr3t"), "secret leaked: {stderr:?}");
    }
}

#[test]
fn help_lists_every_setting_without_secret_values() {
    let (code, stdout, _) = run(
        &["--help"],
        &[
            ("REDIS_URL", "redis://u:s3cr3t-a@h:1"),
            ("REDIS_PASSWORD", "s3cr3t-b"),
            ("DATABASE_URL", "postgres://u:s3cr3t-c@db/x"),
            ("ADMIN_TOKEN", "s3cr3t-d-token"),
        ],
    );
    assert_eq!(code, 0);
    for variable in [
        "SERVER_PORT",
        "BIND_ADDR",
        "REDIS_URL",
        "REDIS_ADDR",
        "REDIS_PASSWORD",
        "REDIS_CA_CERT",
        "REDIS_CLIENT_CERT",
        "REDIS_CLIENT_KEY",
        "REDIS_TIMEOUT",
        "DATABASE_URL",
        "CACHE_TTL",
        "CACHE_KEY_PREFIX",
        "CACHE_WARM",
        "SOURCE_DELAY",
        "SOURCE_TIMEOUT",
        "NEGATIVE_TTL",
        "CACHE_TTL_JITTER",
        "EARLY_REFRESH",
        "STALE_IF_ERROR",
        "FAILSAFE_THROTTLE",
        "LEASE_TTL",
        "CACHE_LEASES",
        "CACHE_COALESCING",
        "REDIS_BREAKER_FAILURES",
        "REDIS_BREAKER_COOLDOWN",
        "ADMIN_TOKEN",
        "SHUTDOWN_GRACE",
        "HTTP_HEADER_TIMEOUT",
        "HTTP_BODY_TIMEOUT",
        "HTTP_IDLE_TIMEOUT",
        "HTTP_MAX_CONNECTIONS",
        "BATCH_MAX_IDS",
        "--no-demo-data",
    ] {
        assert!(
            stdout.contains(variable),
            "--help does not mention {variable}"
        );
    }
    assert!(
        !stdout.contains("s3cr3t"),
        "a secret value is shown in --help"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish_and_exits_zero() {
    let redis = Redis::start();
    let database = TestDatabase::new(Backend::Sqlite).await;
    let (child, port) = start(&[
        ("REDIS_URL", redis.url()),
        ("DATABASE_URL", database.url.clone()),
        ("SOURCE_DELAY", "1s".into()),
        ("SOURCE_TIMEOUT", "1500ms".into()),
    ]);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let in_flight = tokio::spawn({
        let (http, url) = (http.clone(), format!("{base}/items/1"));
        async move { http.get(url).send().await }
    });
    eventually("the request reaches the source of truth", || async {
        upstream_fetches(&http, &base).await == 1
    })
    .await;
    signal(&child, libc::SIGTERM);
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body(response).await["name"], "Laptop Pro");
    assert_eq!(exit_code(child).await, Some(0));
    assert!(
        http.get(format!("{base}/livez")).send().await.is_err(),
        "no longer accepting connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_in_flight_requests_but_not_past_the_grace_period() {
    let mut app = TestApp::builder(Backend::Sqlite)
        .config(|c| {
            c.cache.source_delay = Duration::from_millis(500);
            c.http.shutdown_grace = Duration::from_secs(10);
        })
        .spawn()
        .await;
    let in_flight = tokio::spawn({
        let (http, url) = (app.http.clone(), app.url("/items/2"));
        async move { http.get(url).send().await }
    });
    eventually("the request is in flight", || async {
        app.stats().await["upstream_fetches"] == 1
    })
    .await;
    let server = app.server_handle();
    app.trigger_shutdown();
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    server.await.unwrap().expect("clean shutdown");

    // With a grace period shorter than the request, shutdown does not wait for it.
    let mut app = TestApp::builder(Backend::Sqlite)
        .config(|c| {
            c.cache.source_delay = Duration::from_secs(30);
            c.cache.source_timeout = Duration::from_secs(60);
            c.http.shutdown_grace = Duration::from_millis(100);
        })
        .spawn()
        .await;
    let stuck = tokio::spawn({
        let (http, url) = (app.http.clone(), app.url("/items/2"));
        async move { http.get(url).send().await }
    });
    eventually("the slow request is in flight", || async {
        app.stats().await["upstream_fetches"] == 1
    })
    .await;
    let server = app.server_handle();
    app.trigger_shutdown();
    server
        .await
        .unwrap()
        .expect("shutdown after the grace period");
    stuck.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_database_is_a_sqlite_file_under_data_in_wal_mode() {
    use sqlx::Connection;
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let (child, port) = start_in(dir.path(), &[("REDIS_URL", redis.url())]);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let item = http
        .get(format!("http://127.0.0.1:{port}/items/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(item.status(), StatusCode::OK);
    let file = dir.path().join("data/redis-cache.db");
    assert!(file.exists(), "created on first start");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    signal(&child, libc::SIGTERM);
    assert_eq!(exit_code(child).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_start_up_is_a_clean_stop() {
    // PostgreSQL that is not reachable yet: start-up waits for it.
    let postgres = UnreachablePostgres::new().await;
    let (proxy, proxied) = (&postgres.proxy, postgres.url.clone());
    let redis = Redis::start();
    let mut command = binary();
    command
        .env("DATABASE_URL", proxied)
        .env("REDIS_URL", redis.url())
        .env("SERVER_PORT", "0")
        .stdout(Stdio::null());
    kill_with_parent(&mut command, libc::SIGKILL);
    let child = command.spawn().unwrap();
    eventually("start-up is waiting for the database", || async {
        proxy.refused() >= 1
    })
    .await;
    signal(&child, libc::SIGTERM);
    assert_eq!(exit_code(child).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_at_once() {
    let redis = Redis::start();
    let database = TestDatabase::new(Backend::Sqlite).await;
    let (child, port) = start(&[
        ("REDIS_URL", redis.url()),
        ("DATABASE_URL", database.url.clone()),
        ("SOURCE_DELAY", "60s".into()),
        ("SOURCE_TIMEOUT", "120s".into()),
        ("LEASE_TTL", "121s".into()),
        ("SHUTDOWN_GRACE", "60s".into()),
    ]);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let stuck = tokio::spawn({
        let (http, url) = (http.clone(), format!("{base}/items/1"));
        async move { http.get(url).send().await }
    });
    eventually("the request is in flight", || async {
        upstream_fetches(&http, &base).await == 1
    })
    .await;
    signal(&child, libc::SIGTERM);
    eventually("graceful shutdown has begun", || async {
        http.get(format!("{base}/livez")).send().await.is_err()
    })
    .await;
    signal(&child, libc::SIGTERM);
    assert_eq!(
        exit_code(child).await,
        Some(1),
        "stopped without waiting a minute"
    );
    stuck.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("items.db").display());
    // A wrong Redis password: every connection attempt fails and is logged.
    let redis_url = format!("redis://:s3cr3t-redis-pw@127.0.0.1:{}", redis.port());
    let (child, port, logs) = start_logging(
        dir.path(),
        &[
            ("REDIS_URL", redis_url),
            ("DATABASE_URL", database),
            ("ADMIN_TOKEN", "s3cr3t-admin-token".into()),
        ],
    );
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for path in ["/items/1", "/health", "/stats"] {
        let response = http.get(format!("{base}{path}")).send().await.unwrap();
        assert!(!response.text().await.unwrap().contains("s3cr3t"), "{path}");
    }
    let refused = http
        .post(format!("{base}/cache/invalidate"))
        .bearer_auth("s3cr3t-admin-guess")
        .json(&serde_json::json!({ "key": "item:1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    signal(&child, libc::SIGTERM);
    assert_eq!(exit_code(child).await, Some(0));
    // The channel closes when the process's output ends.
    let logs: Vec<String> = logs.into_iter().collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("redis unavailable at start")),
        "the failed Redis login was logged"
    );
    for line in &logs {
        assert!(!line.contains("s3cr3t"), "secret in log line: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delay_keeps_serving_while_readiness_fails() {
    let mut app = TestApp::builder(Backend::Sqlite)
        .config(|c| c.http.shutdown_delay = Duration::from_secs(2))
        .spawn()
        .await;
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    let server = app.server_handle();
    app.trigger_shutdown();
    eventually("readiness turns away new traffic", || async {
        app.get("/readyz").await.status() == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert_eq!(
        body(app.get("/readyz").await).await["status"],
        "shutting down"
    );
    assert_eq!(
        app.get_item("1").await.status(),
        StatusCode::OK,
        "still serving"
    );
    server
        .await
        .unwrap()
        .expect("clean shutdown after the delay");
}

/// Cache property 2 with a real crash: the instance holding a key's lease is
/// killed in the middle of its source-of-truth read. The other instances
/// wait for its fill, find the lease expired, and one of them takes over:
/// two source-of-truth reads in all for 1,000 lookups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_holder_killed_mid_load_is_taken_over_by_one_instance() {
    let lease_ttl = |c: &mut redis_cache::Config| c.cache.lease_ttl = Duration::from_secs(3);
    let b = TestApp::builder(Backend::Postgres)
        .config(lease_ttl)
        .spawn()
        .await;
    let c = b.peer().config(lease_ttl).spawn().await;
    let (holder, port) = start(&[
        ("REDIS_URL", b.redis.url()),
        ("DATABASE_URL", b.database.url.clone()),
        ("LEASE_TTL", "3s".into()),
        ("SOURCE_DELAY", "2s".into()),
        ("SOURCE_TIMEOUT", "2500ms".into()),
    ]);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let doomed = tokio::spawn({
        let (http, url) = (http.clone(), format!("{base}/items/1"));
        async move { http.get(url).send().await }
    });
    // The read starts after the lease is taken.
    eventually("the holder is reading the source of truth", || async {
        upstream_fetches(&http, &base).await == 1
    })
    .await;
    assert!(b.redis_get("item:1:lease").await.is_some());
    signal(&holder, libc::SIGKILL);
    assert!(
        doomed.await.unwrap().is_err(),
        "the holder died mid-request"
    );

    let lookups: Vec<_> = (0..999)
        .map(|i| {
            if i % 2 == 0 {
                b.spawn_get("1")
            } else {
                c.spawn_get("1")
            }
        })
        .collect();
    for (status, _, item) in futures::future::join_all(lookups)
        .await
        .into_iter()
        .map(Result::unwrap)
    {
        assert_eq!(status, StatusCode::OK);
        assert_eq!(item["name"], "Laptop Pro");
    }
    let takeovers = b.stat("upstream_fetches").await + c.stat("upstream_fetches").await;
    assert_eq!(
        takeovers, 1,
        "one instance took over the dead holder's lease"
    );
    assert_eq!(b.stat("lease_waits").await + c.stat("lease_waits").await, 1);
}

/// Several instances may share one SQLite file, even when they start at the
/// same moment on a fresh one: migrations and demo data are applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_on_a_fresh_sqlite_file_both_run() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("shared.db").display());
    let env = [("REDIS_URL", redis.url()), ("DATABASE_URL", url)];
    let children: Vec<Child> = (0..3).map(|_| spawn_in(dir.path(), &env)).collect();
    let instances: Vec<(Child, u16)> = children
        .into_iter()
        .map(|child| {
            let (child, port, _) = listening(child);
            (child, port)
        })
        .collect();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for (_, port) in &instances {
        let response = http
            .get(format!("http://127.0.0.1:{port}/items/3"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let batch: serde_json::Value = http
        .post(format!("http://127.0.0.1:{}/items/batch", instances[0].1))
        .json(&serde_json::json!({ "ids": ["1", "2", "3", "4"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        batch["missing"],
        serde_json::json!(["4"]),
        "three demo items, once"
    );
    for (child, _) in instances {
        signal(&child, libc::SIGTERM);
        assert_eq!(exit_code(child).await, Some(0));
    }
}
