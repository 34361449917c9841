//! The dashboard's "Redis on the wire (zero-code)" row: a real Prometheus
//! scrapes a real probe watching a busy Redis, and every query of the row
//! must return numbers.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::RedisExt as _;
use crate::helpers::{Probe, Redis};
use test_support::{Prometheus, Service, eventually_within};

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/grafana/redis-cache-dashboard.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `(panel title, query)` of every query on the probe's metrics.
fn wire_queries() -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard()["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            if expr.contains("obi_") {
                queries.push((panel["title"].as_str().unwrap().to_owned(), expr.to_owned()));
            }
        }
    }
    queries
}

/// Background processes, killed when dropped.
struct Running(Vec<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn looping(redis: &Redis, args: &[&str]) -> Child {
    Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &redis.port().to_string(),
            "-l",
            "-q",
        ])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_row_of_the_dashboard_queries_real_series() {
    let queries = wire_queries();
    let titles: Vec<&str> = queries.iter().map(|(t, _)| t.as_str()).collect();
    for title in [
        "Commands/s by command (wire)",
        "Key hit rate by client (wire)",
        "Command latency p99 (wire)",
        "Command errors (wire)",
        "Pub/sub messages (wire)",
        "Pipeline depth (wire)",
        "Connections by client (wire)",
        "Probe health",
    ] {
        assert!(titles.contains(&title), "no panel {title}");
    }

    let redis = Redis::start();
    let probe = Probe::start(&["--redis-port", &redis.port().to_string()]);
    redis.cli(&[], "SET word abc\n");
    // Steady traffic while Prometheus watches: pipelined reads and writes,
    // a command that always fails, and pub/sub with a subscriber.
    let subscriber = Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &redis.port().to_string(),
            "subscribe",
            "news",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _running = Running(vec![
        subscriber,
        looping(
            &redis,
            &[
                "-c", "4", "-P", "16", "-t", "set,get", "-r", "1000", "-n", "20000",
            ],
        ),
        looping(&redis, &["-c", "1", "-n", "200", "INCR", "word"]),
        looping(
            &redis,
            &["-c", "1", "-n", "200", "PUBLISH", "news", "hello"],
        ),
    ]);

    let prometheus = prometheus(probe.metrics_port);

    for (title, expr) in queries {
        let concrete = expr
            .replace("$probe_job", "cache-probe")
            .replace("$client", ".*")
            .replace("$__rate_interval", "10s");
        shows_data(&prometheus, &title, &concrete).await;
    }
}

/// The eight panels of the original example's dashboard, with their
/// expressions as the original README writes them (its "Prometheus
/// Metrics" section) and only the job label set: imported unchanged, they
/// must all show data from the probe watching our service under traffic.
const ORIGINAL_PANELS: [(&str, &str); 10] = [
    (
        "Redis Operations/sec",
        r#"sum(rate(obi_redis_commands_total{job="cache-probe"}[5m]))"#,
    ),
    (
        "Cache Hit Rate",
        r#"sum(rate(obi_redis_commands_total{job="cache-probe",command="GET",status="hit"}[5m])) / sum(rate(obi_redis_commands_total{job="cache-probe",command="GET"}[5m]))"#,
    ),
    (
        "Total Cached Keys",
        r#"obi_redis_keys_total{job="cache-probe"}"#,
    ),
    (
        "Redis Command Latency (p95)",
        r#"histogram_quantile(0.95, sum(rate(obi_redis_command_duration_seconds_bucket{job="cache-probe"}[5m])) by (le))"#,
    ),
    (
        "Redis Command Latency (p99)",
        r#"histogram_quantile(0.99, sum(rate(obi_redis_command_duration_seconds_bucket{job="cache-probe"}[5m])) by (le))"#,
    ),
    (
        "Operations by Command",
        r#"sum by (command) (rate(obi_redis_commands_total{job="cache-probe",command=~"GET|SET|DEL"}[5m]))"#,
    ),
    (
        "Cache Hits vs Misses (hits)",
        r#"sum(rate(obi_redis_commands_total{job="cache-probe",command=~"GET|SET",status="hit"}[5m]))"#,
    ),
    (
        "Cache Hits vs Misses (misses)",
        r#"sum(rate(obi_redis_commands_total{job="cache-probe",command=~"GET|SET",status="miss"}[5m]))"#,
    ),
    (
        "Pub/Sub Messages",
        r#"sum(rate(obi_redis_pubsub_messages_total{job="cache-probe",channel="cache:invalidate"}[5m]))"#,
    ),
    (
        "Redis Memory Usage",
        r#"obi_redis_memory_usage_bytes{job="cache-probe"}"#,
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_original_examples_dashboard_shows_data_in_every_panel() {
    let redis = Redis::start();
    let probe = Probe::start(&[
        "--redis-port",
        &redis.port().to_string(),
        "--poll-info",
        "--poll-interval",
        "1s",
    ]);
    // Without the near cache, so that every read is a GET on the wire.
    let service = Service::start(&redis.url(), &["--l1-capacity=0"]).await;
    // The original walkthrough's traffic, over and over: hits, misses (an
    // unknown id, and reads after updates), and invalidations published.
    let traffic = tokio::spawn({
        let (http, base) = (service.http(), service.url(""));
        async move {
            for round in 0u64.. {
                for id in ["1", "2", "3", "nosuch"] {
                    let _ = http.get(format!("{base}/items/{id}")).send().await;
                }
                let stock = serde_json::json!({ "stock": round % 50 });
                let _ = http
                    .put(format!("{base}/items/2"))
                    .json(&stock)
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let prometheus = prometheus(probe.metrics_port);
    for (title, expr) in ORIGINAL_PANELS {
        shows_data(&prometheus, title, expr).await;
    }
    traffic.abort();
    service.stop().await;
}
/// A Prometheus scraping the probe on `probe_port` every second.
fn prometheus(probe_port: u16) -> Prometheus {
    Prometheus::start("cache-probe", &[probe_port], &[])
}

/// Waits until `expr` returns a finite value.
async fn shows_data(prometheus: &Prometheus, title: &str, expr: &str) {
    let what = format!("{title}: {expr}");
    eventually_within(&what, Duration::from_secs(60), || async {
        let values = prometheus.values(expr).await?;
        if values.iter().any(|v| v.is_finite()) {
            Ok(())
        } else {
            Err(format!("no finite value: {values:?}"))
        }
    })
    .await;
}
