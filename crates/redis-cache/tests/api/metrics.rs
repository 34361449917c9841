//! `GET /metrics`: the Prometheus exposition, consistent with `/stats` and
//! with what Redis itself counted, and accepted by `promtool check metrics`.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, TestApp, eventually, header, publish};

/// Samples of the exposition: series (name and labels, as printed) → value.
async fn scrape(app: &TestApp) -> (String, HashMap<String, f64>) {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        header(&response, "content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    let samples = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse::<f64>().unwrap())
        })
        .collect();
    (text, samples)
}

fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no sample {series}"))
}

/// The sum over every series of `name` whose labels contain all of `labels`.
fn sum(samples: &HashMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| {
            series.split('{').next() == Some(name) && labels.iter().all(|l| series.contains(l))
        })
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_agree_with_stats_and_with_redis() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let calls_before = app.redis.command_calls();
    app.get_item("1").await; // miss
    app.get_item("1").await; // L1 hit
    app.get_item("ghost").await; // miss, 404 (cached absence)
    app.get_item("ghost").await; // L1 negative hit
    app.batch(&["1", "2", "3"]).await; // 1 L1 hit, 2 misses
    app.put("2", json!({ "stock": 3 })).await;
    app.get_item("bad id!").await; // 400: no lookup
    app.get("/nowhere/42").await; // 404: no route

    let stats = app.stats().await;
    let (text, samples) = scrape(&app).await;
    let lookups = |result: &str, tier: &str| {
        value(
            &samples,
            &format!(r#"redis_cache_lookups_total{{result="{result}",tier="{tier}"}}"#),
        )
    };
    assert_eq!(lookups("hit", "l1"), 3.0);
    assert_eq!(lookups("hit", "l2"), 0.0);
    assert_eq!(lookups("miss", "source"), 4.0);
    assert_eq!(
        sum(&samples, "redis_cache_lookups_total", &[]),
        stats["lookups"].as_f64().unwrap(),
        "one result per lookup"
    );
    assert_eq!(lookups("hit", "l1"), stats["l1_hits"].as_f64().unwrap());
    for (metric, stat) in [
        ("redis_cache_negative_hits_total", "negative_hits"),
        ("redis_cache_fills_total", "fills"),
        ("redis_cache_source_reads_total", "upstream_fetches"),
        (
            "redis_cache_invalidations_published_total",
            "invalidations_published",
        ),
    ] {
        assert_eq!(
            value(&samples, metric),
            stats[stat].as_f64().unwrap(),
            "{metric}"
        );
    }

    // Routes are the matched templates, never raw paths.
    let route = |route: &str, status: &str| {
        sum(
            &samples,
            "http_server_request_duration_seconds_count",
            &[
                &format!(r#"http_route="{route}""#),
                &format!(r#"http_response_status_code="{status}""#),
            ],
        )
    };
    assert_eq!(route("/items/{id}", "200"), 3.0, "two GETs and a PUT");
    assert_eq!(route("/items/{id}", "404"), 2.0);
    assert_eq!(route("/items/{id}", "400"), 1.0);
    assert_eq!(route("/items/batch", "200"), 1.0);
    assert_eq!(route("", "404"), 1.0, "unmatched requests have no route");
    assert!(
        !text.contains("ghost") && !text.contains("/nowhere"),
        "no raw path in labels"
    );

    // Redis commands as the service saw them, against Redis' own count.
    let calls_after = app.redis.command_calls();
    let redis_calls = |name: &str| {
        calls_after.get(name).copied().unwrap_or(0) - calls_before.get(name).copied().unwrap_or(0)
    };
    let seen = |operation: &str| {
        sum(
            &samples,
            "db_client_operation_duration_seconds_count",
            &[
                r#"db_system_name="redis""#,
                &format!(r#"db_operation_name="{operation}""#),
            ],
        )
    };
    // Redis also counts the GETs of the 4 ids loaded: two in each lease
    // pipeline (the key, the lease), one in the fill script (the lease).
    assert_eq!(redis_calls("get"), seen("GET") as u64 + 3 * 4);
    assert_eq!(seen("MGET") as u64, redis_calls("mget"));
    // Commands, counted one by one as Redis counts them: what the service
    // sent, plus what its fill script ran inside Redis (a GET, a SET and a
    // DEL for each of the 4 ids loaded).
    let sent = |command: &str| {
        value(
            &samples,
            &format!(
                r#"redis_cache_redis_commands_total{{command="{}"}}"#,
                command.to_ascii_uppercase()
            ),
        ) as u64
    };
    for command in ["mget", "evalsha", "unlink"] {
        assert_eq!(sent(command), redis_calls(command), "{command}");
    }
    assert_eq!(sent("get") + 4, redis_calls("get"));
    assert_eq!(sent("set") + 4, redis_calls("set"));
    assert_eq!(redis_calls("del"), 4);
    assert_eq!(sent("unlink"), 2, "the PUT deletes the lease and the value");
    assert_eq!(
        sum(
            &samples,
            "db_client_operation_duration_seconds_count",
            &[
                r#"db_system_name="postgresql""#,
                r#"db_operation_name="SELECT""#
            ]
        ),
        stats["upstream_fetches"].as_f64().unwrap()
    );
    assert_eq!(
        sum(
            &samples,
            "db_client_operation_duration_seconds_count",
            &[r#"db_operation_name="UPDATE""#]
        ),
        1.0
    );

    assert_eq!(value(&samples, "redis_cache_redis_up"), 1.0);
    assert_eq!(value(&samples, "redis_cache_subscriber_up"), 1.0);
    assert_eq!(value(&samples, "redis_cache_l1_usable"), 1.0);
    assert_eq!(
        value(
            &samples,
            r#"redis_cache_circuit_breaker_state{state="closed"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            r#"redis_cache_circuit_breaker_state{state="open"}"#
        ),
        0.0
    );
    assert!(value(&samples, "redis_cache_l1_entries") >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_memory_and_keys_are_polled() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.batch(&["1", "2", "3"]).await;
    app.redis_set("foreign:key", "not ours").await;
    eventually("a poll after the fills", || async {
        scrape(&app).await.1.get("redis_cache_keys") == Some(&3.0)
    })
    .await;
    let (_, samples) = scrape(&app).await;
    assert!(value(&samples, "redis_memory_used_bytes") > 100_000.0);
    assert!(
        value(&samples, "redis_keyspace_keys") >= 4.0,
        "all keys, ours and others'"
    );
    let polled_at = value(&samples, "redis_cache_redis_poll_success_timestamp_seconds");
    assert!(polled_at > 1.7e9, "a Unix time: {polled_at}");

    // A dead server's last numbers are not shown as current.
    app.redis.kill();
    eventually("the gauges are gone", || async {
        !scrape(&app).await.1.contains_key("redis_memory_used_bytes")
    })
    .await;
    let (_, samples) = scrape(&app).await;
    assert!(!samples.contains_key("redis_cache_keys"));
    assert!(
        value(&samples, "redis_cache_redis_poll_success_timestamp_seconds") >= polled_at,
        "when the last good poll was stays"
    );
    // Back (empty) without any request: the poll alone brings them back.
    app.redis.restart();
    eventually("polled again", || async {
        scrape(&app).await.1.get("redis_cache_keys") == Some(&0.0)
    })
    .await;
}

/// `/stats/reset` starts every figure of `/stats` afresh (lookups,
/// near-cache flushes, the invalidation lag and its maximum), and the
/// counters of `/metrics` never go backwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stats_reset_starts_stats_afresh_and_leaves_the_counters_alone() {
    let writer = TestApp::spawn(Backend::Sqlite).await;
    let app = writer.peer().spawn().await;
    app.get_item("1").await;
    app.get_item("1").await;
    let put = writer.put("1", json!({ "stock": 7 })).await;
    assert_eq!(put.status(), StatusCode::OK);
    eventually("the invalidation was applied here", || async {
        app.stats().await["invalidation_lag"]["count"] == 1
    })
    .await;
    // A gap in another sender's numbers flushes the near cache.
    let started = redis_cache::cache::now_ms() - 60_000;
    for seq in [1, 5] {
        let message = json!({ "key": "item:99", "source": "peer", "seq": seq, "started": started });
        publish(&app, message).await;
    }
    eventually("the gap flushed the near cache", || async {
        app.stat("l1_flushes").await >= 1
    })
    .await;
    let flushes = app.stat("l1_flushes").await;

    let reset = app.post("/stats/reset", &json!({})).await;
    assert_eq!(reset.status(), StatusCode::OK);
    let stats = app.stats().await;
    assert_eq!(stats["lookups"], 0);
    assert_eq!(stats["l1_flushes"], 0);
    assert_eq!(stats["invalidation_lag"]["count"], 0);
    assert_eq!(stats["invalidation_lag"]["max_ms"], 0.0);
    let (_, samples) = scrape(&app).await;
    assert_eq!(sum(&samples, "redis_cache_lookups_total", &[]), 2.0);
    assert_eq!(
        sum(&samples, "redis_cache_l1_flushes_total", &[]),
        flushes as f64
    );
    assert_eq!(
        sum(&samples, "redis_cache_invalidation_lag_seconds_count", &[]),
        1.0
    );

    // Counted again from the reset on.
    let put = writer.put("1", json!({ "stock": 8 })).await;
    assert_eq!(put.status(), StatusCode::OK);
    eventually("the next invalidation counts from the reset", || async {
        let lag = &app.stats().await["invalidation_lag"];
        lag["count"] == 1 && lag["max_ms"].as_f64() > Some(0.0)
    })
    .await;
}

/// `promtool check metrics` finds nothing to say about the exposition (the
/// Debian `prometheus` package, installed by `scripts/test`, provides it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_exposition() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.get_item("1").await;
    app.get_item("1").await;
    let (text, _) = scrape(&app).await;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
}
