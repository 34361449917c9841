//! Third-party clients the probe was not written against: redis-py (PyPI)
//! and ioredis (npm), each running `tests/clients/`' workload (pipelines and
//! transactions of thousands of commands, failing transactions, RESP3 with
//! client tracking, values of 200 KiB and 1.5 MiB, pub/sub with patterns,
//! ioredis' auto-pipelining, commands Redis refuses), over RESP2 and RESP3,
//! two at a time. What the probe reports is compared with what Redis
//! counted: calls, refused and failed calls per command, every error reply,
//! and key lookups.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::{Probe, Redis, eventually_blocking};

/// This test's own commands: its raw `INFO` polls (no client library, so
/// nothing else).
const OWN: &str = "INFO";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The clients' environments, as `scripts/test` installs them.
fn python() -> PathBuf {
    let python = workspace().join("target/deploy-venv/bin/python");
    assert!(
        python.exists(),
        "no {} with redis-py: run scripts/test, which installs it",
        python.display()
    );
    python
}

fn node_modules() -> PathBuf {
    let modules = workspace().join("deploy/tests/node_modules");
    assert!(
        modules.join("ioredis").exists(),
        "no ioredis in {}: run scripts/test, which installs it",
        modules.display()
    );
    modules
}

/// Starts one workload against `redis`.
fn workload(redis: &Redis, client: &str, protocol: &str) -> Child {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    let mut command = match client {
        "redis-py" => {
            let mut c = Command::new(python());
            c.arg(scripts.join("redis_py_workload.py"));
            c
        }
        _ => {
            let mut c = Command::new("node");
            c.arg(scripts.join("ioredis_workload.js"))
                .env("NODE_PATH", node_modules());
            c
        }
    };
    command
        .env("REDIS_PORT", redis.port().to_string())
        .env("KEY_PREFIX", format!("{client}:{protocol}:"))
        .env("RESP_PROTOCOL", protocol)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("{client} does not start: {err}"))
}

fn finish(child: Child, what: &str) {
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A reply of Redis to one command sent on a fresh raw connection: no
/// client library, so nothing but the command itself reaches Redis.
fn raw(redis: &Redis, words: &[&str]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", redis.port())).unwrap();
    let mut request = format!("*{}\r\n", words.len());
    for word in words {
        request.push_str(&format!("${}\r\n{word}\r\n", word.len()));
    }
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "Redis closed the connection");
        reply.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&reply);
        if text.starts_with('+') || text.starts_with('-') {
            if text.ends_with("\r\n") {
                return text.into_owned();
            }
        } else if let Some((length, body)) =
            text.strip_prefix('$').and_then(|t| t.split_once("\r\n"))
            && body.len() >= length.parse::<usize>().unwrap() + 2
        {
            return body[..body.len() - 2].to_owned();
        }
    }
}

/// What Redis counted.
#[derive(Debug, PartialEq)]
struct Counted {
    /// Per command (in capitals, without the test's own `INFO`): calls +
    /// rejected calls, failed + rejected calls, rejected calls.
    commands: BTreeMap<String, (u64, u64, u64)>,
    /// Error replies of every kind.
    errors: u64,
    /// Key lookups: (hits, misses).
    keyspace: (u64, u64),
}

fn field(fields: &str, key: &str) -> u64 {
    fields
        .split(',')
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        .unwrap_or(0)
}

fn redis_counted(redis: &Redis) -> Counted {
    let mut commands = BTreeMap::new();
    for line in raw(redis, &["INFO", "commandstats"]).lines() {
        if let Some((name, fields)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        {
            let (calls, rejected, failed) = (
                field(fields, "calls"),
                field(fields, "rejected_calls"),
                field(fields, "failed_calls"),
            );
            let name = name.to_ascii_uppercase();
            if name != OWN {
                commands.insert(name, (calls + rejected, failed + rejected, rejected));
            }
        }
    }
    let stats = raw(redis, &["INFO", "stats"]);
    let stat = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
            .unwrap()
    };
    Counted {
        commands,
        errors: stat("total_error_replies"),
        keyspace: (stat("keyspace_hits"), stat("keyspace_misses")),
    }
}

/// The same, as the probe reports it; and its unknown key lookups.
fn probe_counted(probe: &Probe, port: u16) -> (Counted, u64) {
    let port = port.to_string();
    let mut commands: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    let mut errors = 0;
    for s in probe.samples() {
        if s.label("server_port") != port || s.label("command") == OWN {
            continue;
        }
        let n = s.value as u64;
        match s.name.as_str() {
            "obi_redis_commands_total" => {
                let entry = commands.entry(s.label("command").to_owned()).or_default();
                entry.0 += n;
                if s.label("status") == "error" {
                    entry.1 += n;
                    errors += n;
                }
            }
            "obi_redis_rejected_commands_total" if s.label("reason") == "unknown" => errors += n,
            "obi_redis_rejected_commands_total" => {
                commands.entry(s.label("command").to_owned()).or_default().2 += n;
            }
            _ => {}
        }
    }
    let (hits, misses, unknown) = probe.all_key_lookups(port.parse().unwrap());
    (
        Counted {
            commands,
            errors,
            keyspace: (hits, misses),
        },
        unknown,
    )
}

#[test]
fn third_party_clients_count_exactly_as_redis_counts() {
    let redis = Redis::start();
    let probe = Probe::start(&["--redis-port", &redis.port().to_string()]);
    // From zero on both sides: what the harness sent before the probe
    // started is forgotten by Redis too.
    assert_eq!(raw(&redis, &["CONFIG", "RESETSTAT"]), "+OK\r\n");
    for protocol in ["2", "3"] {
        let py = workload(&redis, "redis-py", protocol);
        let js = workload(&redis, "ioredis", protocol);
        finish(py, &format!("redis-py over RESP{protocol}"));
        finish(js, &format!("ioredis over RESP{protocol}"));
    }

    let mut last = None;
    eventually_blocking(
        "the probe's counts to equal Redis' own",
        Duration::from_secs(30),
        || {
            let (mut seen, unknown) = probe_counted(&probe, redis.port());
            let wanted = redis_counted(&redis);
            last = Some((seen.keyspace, unknown, wanted.keyspace));
            // Every lookup Redis counted is one the probe saw; those it
            // could not decide are each a hit or a miss for Redis.
            let (hits, misses) = seen.keyspace;
            let (redis_hits, redis_misses) = wanted.keyspace;
            let lookups_agree = hits + misses + unknown == redis_hits + redis_misses
                && (hits..=hits + unknown).contains(&redis_hits)
                && (misses..=misses + unknown).contains(&redis_misses);
            seen.keyspace = wanted.keyspace;
            if seen == wanted && lookups_agree {
                Ok(())
            } else {
                Err(format!(
                    "probe: {seen:#?}, {unknown} unknown; redis: {wanted:#?}"
                ))
            }
        },
    );
    let (seen, _) = probe_counted(&probe, redis.port());
    // The traffic was what it claims: big pipelines and transactions,
    // refused and failed commands, the clients' own handshakes.
    assert!(seen.commands["SET"].0 > 5_000, "{:?}", seen.commands["SET"]);
    assert!(
        seen.commands["EXEC"].1 >= 4,
        "EXECABORTs: {:?}",
        seen.commands["EXEC"]
    );
    assert!(seen.commands["GET"].2 >= 4, "GET refused for its arity");
    assert!(
        probe.sum(
            "obi_redis_rejected_commands_total",
            &[("command", "CLIENT|SETINFO"), ("reason", "unknown")]
        ) >= 8.0,
        "the clients' CLIENT SETINFO, unknown to Redis 7.0"
    );
    let (hits, misses, unknown) = probe.all_key_lookups(redis.port());
    let undecided: Vec<(String, f64)> = probe
        .samples()
        .into_iter()
        .filter(|s| s.name == "obi_redis_key_lookups_total" && s.label("result") == "unknown")
        .map(|s| (s.label("command").to_owned(), s.value))
        .collect();
    eprintln!(
        "key lookups: {hits} hits, {misses} misses, {unknown} unknown ({undecided:?}); \
         last check (probe hits and misses, unknown, Redis): {last:?}"
    );
    assert!(
        hits > 10_000 && misses > 1_000,
        "{hits} hits, {misses} misses"
    );
    // Nothing lost, nothing resynchronised; the 1.5 MiB values went past
    // the capture and were skipped by their length.
    assert_eq!(probe.sum("obi_probe_events_lost_total", &[]), 0.0);
    assert_eq!(probe.sum("obi_probe_parse_resyncs_total", &[]), 0.0);
    assert!(probe.sum("obi_probe_skipped_bytes_total", &[]) > 0.0);
}
