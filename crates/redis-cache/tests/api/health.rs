//! `/health`, `/livez`, `/readyz` and `/stats` on a healthy instance.

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, body};

both_backends!(
    probes_report_a_healthy_instance,
    stats_count_every_lookup_exactly_once
);

async fn probes_report_a_healthy_instance(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, health) = app.health().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["database"], "connected");
    assert_eq!(health["redis"], "connected");
    assert_eq!(health["subscriber"], "subscribed");
    let live = app.get("/livez").await;
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(body(live).await, json!({ "status": "alive" }));
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(body(ready).await, json!({ "status": "ready" }));
}

async fn stats_count_every_lookup_exactly_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let stats = app.stats().await;
    assert_eq!(stats["hit_rate"], 0.0, "0, never NaN, without lookups");
    assert_eq!(stats["lookups"], 0);
    assert_eq!(stats["total_keys"], 0);
    for id in ["1", "1", "2", "nope", "nope"] {
        app.get_item(id).await;
    }
    app.batch(&["1", "2", "3", "3", "nope"]).await;
    let stats = app.stats().await;
    // singles: 1 miss, 1 hit, 2 miss, nope miss, nope hit (cached absence);
    // batch (distinct ids): 1 hit, 2 hit, 3 miss, nope hit.
    assert_eq!(stats["hits"], 5);
    assert_eq!(stats["negative_hits"], 2);
    assert_eq!(stats["misses"], 4);
    assert_eq!(stats["lookups"], 9);
    assert_eq!(stats["hit_rate"], 5.0 / 9.0);
    assert_eq!(stats["total_keys"], 4, "1, 2, 3 and the absence of nope");
    assert_eq!(stats["fills"], 4);
    assert_eq!(stats["upstream_fetches"], 4);
    assert!(stats["instance"].as_str().unwrap().starts_with("test-"));

    let reset = app.post("/stats/reset", &json!({})).await;
    assert_eq!(reset.status(), StatusCode::OK);
    let stats = app.stats().await;
    assert_eq!(
        (stats["hits"].as_u64(), stats["misses"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(
        stats["total_keys"], 4,
        "resetting counters does not touch the cache"
    );
}

/// `redis-cache healthcheck`, what container images run instead of curl:
/// 0 while the instance is ready, 1 when it is not or nothing answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthcheck_subcommand_follows_readiness() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let port = app.port().to_string();
    let check = |args: Vec<String>, env: Vec<(&'static str, String)>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            crate::helpers::binary::run(&args, &env)
        })
    };
    let ready = check(
        vec!["healthcheck".into()],
        vec![("SERVER_PORT", port.clone())],
    )
    .await
    .unwrap();
    assert_eq!(ready.0, 0, "{ready:?}");
    let by_flag = check(
        vec![
            "healthcheck".into(),
            "--port".into(),
            port.clone(),
            "--path".into(),
            "/livez".into(),
        ],
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(by_flag.0, 0, "{by_flag:?}");
    let nothing = crate::helpers::free_port().to_string();
    let down = check(vec!["healthcheck".into(), "--port".into(), nothing], vec![])
        .await
        .unwrap();
    assert_eq!(down.0, 1, "{down:?}");
    let missing = check(
        vec!["healthcheck".into(), "--path".into(), "/nowhere".into()],
        vec![("SERVER_PORT", port)],
    )
    .await
    .unwrap();
    assert_eq!(missing.0, 1);
    assert!(missing.2.contains("\"404\""), "{missing:?}");
}
