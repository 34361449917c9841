//! OTLP spans, one per command, received by a collector of our own (OTLP
//! over HTTP, JSON encoding); and the start-up checks.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::RedisExt as _;
use crate::helpers::{Probe, Redis, eventually_blocking};
use test_support::otlp::{attribute, int_attribute, receiver};

#[test]
fn every_command_is_a_client_span() {
    let redis = Redis::start();
    let (endpoint, received) = receiver();
    let probe = Probe::start_with_env(
        &[
            "--redis-port",
            &redis.port().to_string(),
            "--comm",
            "redis-cli",
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    redis.cli(
        &[],
        "SET user:1 secret-value\nGET user:1\nGET nosuch\nHGET user:1 f\nAUTH admin hunter2\n",
    );
    // Commands: COMMAND DOCS (sent by redis-cli), SET, GET, GET, HGET, AUTH.
    eventually_blocking("six spans", Duration::from_secs(15), || {
        match received.spans().len() {
            6 => Ok(()),
            n => Err(n),
        }
    });
    let spans = received.spans();
    let named =
        |name: &str| -> Vec<&Value> { spans.iter().filter(|s| s["name"] == name).collect() };
    let gets = named("GET");
    assert_eq!(gets.len(), 2);
    for get in &gets {
        assert_eq!(get["kind"], 3, "CLIENT");
        assert_eq!(attribute(get, "db.system.name").as_deref(), Some("redis"));
        assert_eq!(attribute(get, "db.operation.name").as_deref(), Some("GET"));
        assert_eq!(
            attribute(get, "server.address").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            int_attribute(get, "server.port"),
            Some(i64::from(redis.port()))
        );
        let (start, end) = (&get["startTimeUnixNano"], &get["endTimeUnixNano"]);
        let nanos = |v: &Value| {
            v.as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .or(v.as_u64())
                .unwrap()
        };
        assert!(nanos(end) >= nanos(start));
    }
    let texts: Vec<_> = gets
        .iter()
        .filter_map(|g| attribute(g, "db.query.text"))
        .collect();
    assert_eq!(texts, ["GET user:1", "GET nosuch"]);
    // An error has its code; values and credentials never leave.
    let hget = named("HGET")[0];
    assert_eq!(
        attribute(hget, "db.response.status_code").as_deref(),
        Some("WRONGTYPE")
    );
    assert_eq!(hget["status"]["code"], 2, "ERROR");
    let all = serde_json::to_string(&spans).unwrap();
    assert!(!all.contains("secret-value") && !all.contains("hunter2") && !all.contains("admin"));
    drop(probe);
}

/// Without the privileges it needs, the probe says what to do, in one
/// line, instead of failing somewhere in the loader.
#[test]
fn an_unprivileged_start_fails_with_an_actionable_message() {
    // A copy the unprivileged user can run wherever the checkout lives (a
    // clone under /root or in a private temporary folder cannot be entered
    // by it); /tmp, unlike $TMPDIR, is open to every user.
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("cache-probe-unprivileged")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = dir.path().join("cache-probe");
    std::fs::copy(env!("CARGO_BIN_EXE_cache-probe"), &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = Command::new(&binary)
        .args(["--metrics-addr", "127.0.0.1:0"])
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("needs root, or the CAP_BPF and CAP_PERFMON capabilities"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}
