//! The dashboard's "Redis on the wire (zero-code)" row: a real Prometheus
//! scrapes a real probe watching a busy Redis, and every query of the row
//! must return numbers.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::RedisExt as _;
use crate::helpers::{Probe, Redis, eventually, free_port};

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
        .args(["-h", "127.0.0.1", "-p", &redis.port.to_string(), "-l", "-q"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn the_wire_row_of_the_dashboard_queries_real_series() {
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
    let probe = Probe::start(&["--redis-port", &redis.port.to_string()]);
    redis.cli(&[], "SET word abc\n");
    // Steady traffic while Prometheus watches: pipelined reads and writes,
    // a command that always fails, and pub/sub with a subscriber.
    let subscriber = Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &redis.port.to_string(),
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

    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "global: {{scrape_interval: 1s}}\n\
         scrape_configs:\n  - job_name: cache-probe\n    static_configs: [{{targets: [\"127.0.0.1:{}\"]}}]\n",
        probe.metrics_port
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let port = free_port();
    let _prometheus = Running(vec![
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus; scripts/test installs it)"),
    ]);

    for (title, expr) in queries {
        let concrete = expr
            .replace("$probe_job", "cache-probe")
            .replace("$client", ".*")
            .replace("$__rate_interval", "10s");
        eventually(
            &format!("{title}: {concrete}"),
            Duration::from_secs(60),
            || {
                let values = query(port, &concrete)?;
                if values.iter().any(|v| v.is_finite()) {
                    Ok(())
                } else {
                    Err(format!("no finite value: {values:?}"))
                }
            },
        );
    }
}

/// The values of an instant query's series.
fn query(port: u16, expr: &str) -> Result<Vec<f64>, String> {
    let url = format!("/api/v1/query?query={}", encode(expr));
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    use std::io::{Read, Write};
    write!(stream, "GET {url} HTTP/1.0\r\nHost: prometheus\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let answer: Value = serde_json::from_str(body).map_err(|e| format!("{e}: {body}"))?;
    if answer["status"] != "success" {
        return Err(format!("{answer}"));
    }
    Ok(answer["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|series| series["value"][1].as_str()?.parse().ok())
        .collect())
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
