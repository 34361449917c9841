//! A least-privilege Redis user: the documented minimal ACL is all the
//! cache needs, and any permission missing from it is named at start, in
//! `/health` (degraded) and in `/metrics`, instead of caching silently
//! stopping.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::RedisOptions;
use crate::helpers::{Backend, Redis, TestApp, body, eventually, header};

/// The ACL documented in `docs/operations.md` (Redis permissions), for the
/// default prefix and channel: the rules after `user cache on >password`.
fn minimal_acl() -> String {
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/operations.md");
    let docs = std::fs::read_to_string(docs).unwrap();
    let rules = docs
        .lines()
        .find_map(|line| line.strip_prefix("user cache on >password "))
        .expect("docs/operations.md documents the ACL user");
    rules.to_owned()
}

/// A Redis with a user `cache` holding exactly `permissions`.
fn redis_with_user(permissions: &str) -> Redis {
    let mut extra_args = vec!["--user".to_owned(), "cache".into(), "on".into()];
    extra_args.push(">cache-secret".into());
    extra_args.extend(permissions.split_whitespace().map(str::to_owned));
    Redis::start_with(RedisOptions {
        extra_args,
        ..RedisOptions::default()
    })
}

fn as_cache_user(redis: &Redis) -> String {
    format!("redis://cache:cache-secret@127.0.0.1:{}", redis.port())
}

/// The service on a Redis of its own, connected as a user `cache` holding
/// exactly `permissions`; not waiting for a subscription that may never be.
async fn app_as_cache_user(permissions: &str) -> TestApp {
    let redis = redis_with_user(permissions);
    let url = as_cache_user(&redis);
    TestApp::builder(Backend::Sqlite)
        .with_redis(redis)
        .redis_url(url)
        .without_waiting_for_cache()
        .spawn()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_minimal_acl_is_all_the_cache_needs() {
    let redis = redis_with_user(&minimal_acl());
    let url = as_cache_user(&redis);
    let a = TestApp::builder(Backend::Sqlite)
        .with_redis(redis)
        .redis_url(url.clone())
        .spawn()
        .await;
    let b = a.peer().redis_url(url).without_l1().spawn().await;

    assert_eq!(
        header(&a.get_item("1").await, "x-cache-status"),
        Some("MISS")
    );
    assert_eq!(
        header(&a.get_item("1").await, "x-cache-status"),
        Some("HIT")
    );
    let from_redis = b.get_item("1").await;
    assert_eq!(header(&from_redis, "x-cache-tier"), Some("L2"));
    let updated = a.put("1", json!({ "stock": 99 })).await;
    assert_eq!(updated.status(), StatusCode::OK);
    assert_eq!(body(b.get_item("1").await).await["stock"], 99);
    let batch = b.batch(&["1", "2", "3"]).await;
    assert_eq!(batch.status(), StatusCode::OK);
    let invalidated = a.invalidate(json!({ "pattern": "item:*" })).await;
    assert_eq!(invalidated.status(), StatusCode::OK);
    assert!(body(invalidated).await["deleted"].as_u64().unwrap() >= 1);
    assert!(a.stats().await["total_keys"].is_u64());
    eventually("memory polled with INFO", || async {
        a.get("/metrics")
            .await
            .text()
            .await
            .unwrap()
            .contains("\nredis_memory_used_bytes ")
    })
    .await;

    for app in [&a, &b] {
        let (status, health) = app.health().await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(health["status"], "healthy", "{health}");
        assert_eq!(health["redis_refused"], json!({}));
    }
    let metrics = a.get("/metrics").await.text().await.unwrap();
    assert!(!metrics.contains("error_type=\"refused\""), "{metrics}");
    assert!(!metrics.contains("redis_cache_redis_refused_command{"));
}

/// Each permission of the minimal ACL taken away in turn: the command is
/// named in `/health`, which says degraded, and in `/metrics`; reads are
/// still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_is_named_and_makes_the_instance_degraded() {
    for (missing, named) in [
        ("+set", "set"),
        ("+get", "get"),
        ("+evalsha", "evalsha"),
        ("+script|load", "script|load"),
        ("+del", "del"),
        ("+publish", "publish"),
        ("+subscribe", "subscribe"),
        ("&cache:invalidate", "subscribe"),
    ] {
        let acl = minimal_acl();
        let permissions: Vec<&str> = acl.split_whitespace().filter(|p| *p != missing).collect();
        let app = app_as_cache_user(&permissions.join(" ")).await;
        eventually(
            &format!("without {missing}, /health names {named}"),
            || async { app.health().await.1["redis_refused"].get(named).is_some() },
        )
        .await;
        let health: Value = app.health().await.1;
        assert_eq!(health["status"], "degraded", "without {missing}: {health}");
        let reason = health["redis_refused"][named].as_str().unwrap();
        assert!(reason.starts_with("NOPERM"), "without {missing}: {reason}");
        let metrics = app.get("/metrics").await.text().await.unwrap();
        let gauge = format!("redis_cache_redis_refused_command{{command=\"{named}\"}} 1");
        assert!(metrics.contains(&gauge), "without {missing}");
        assert_eq!(app.get_item("1").await.status(), StatusCode::OK);
    }
}

/// Redis accepts the command again (the ACL was fixed): the instance is
/// healthy again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_granted_later_clears_the_refusal() {
    let app = app_as_cache_user(&minimal_acl().replace(" +set", "")).await;
    eventually("set refused", || async {
        app.health().await.1["redis_refused"].get("set").is_some()
    })
    .await;
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("cache")
        .arg("+set")
        .query_async::<()>(&mut app.redis.conn().await)
        .await
        .unwrap();
    // The next miss takes its lease with SET, and is accepted.
    eventually("healthy again", || async {
        app.get_item("2").await;
        let health = app.health().await.1;
        health["status"] == "healthy" && health["redis_refused"] == json!({})
    })
    .await;
}

/// The refusal is logged at start, once, however many requests meet it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_is_logged_once_at_start() {
    let redis = redis_with_user(&minimal_acl().replace(" +set", ""));
    let database = crate::helpers::TestDatabase::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let mut command =
        crate::helpers::binary::service_command(dir.path(), as_cache_user(&redis), &database, &[]);
    let (child, port, logs) = crate::helpers::binary::listening(command.spawn().unwrap());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for id in ["1", "2", "3", "1", "2", "3"] {
        let response = http
            .get(format!("http://127.0.0.1:{port}/items/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    crate::helpers::binary::signal(&child, libc::SIGTERM);
    assert_eq!(crate::helpers::binary::exit_code(child).await, Some(0));
    let events: Vec<Value> = logs
        .iter()
        .filter_map(|line| serde_json::from_str(&line).ok())
        .collect();
    let listening = events
        .iter()
        .position(|e| e["message"] == "listening")
        .unwrap();
    let refusals: Vec<usize> = (0..events.len())
        .filter(|&i| events[i]["level"] == "ERROR" && events[i]["command"] == "set")
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(refusals[0] < listening, "reported before serving");
    assert!(
        events[refusals[0]]["reason"]
            .as_str()
            .unwrap()
            .contains("no permissions to run the 'set' command")
    );
}
