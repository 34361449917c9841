//! `--poll-info`: the key count and memory come from one connection kept
//! between polls, which sends nothing Redis 7.0 refuses, and the probe never
//! counts its own commands as traffic.

use std::time::Duration;

use crate::helpers::{Probe, Redis, eventually_blocking};

/// A field of `INFO` on `conn`.
fn info_field(conn: &mut redis::Connection, name: &str) -> u64 {
    let info: String = redis::cmd("INFO").query(conn).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in INFO"))
}

#[test]
fn polling_keeps_one_connection_and_is_not_counted_as_traffic() {
    let redis = Redis::start();
    // One connection of the test's for everything it asks Redis.
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let probe = Probe::start(&[
        "--redis-port",
        &redis.port().to_string(),
        "--poll-info",
        "--poll-interval",
        "50ms",
    ]);
    let set_keys = |conn: &mut redis::Connection, from: usize, to: usize| {
        for n in from..to {
            redis::cmd("SET")
                .arg(format!("k{n}"))
                .arg(n)
                .query::<()>(conn)
                .unwrap();
        }
    };
    let keys_seen = |expected: f64| {
        eventually_blocking(
            &format!("{expected} keys polled"),
            Duration::from_secs(10),
            || {
                let keys = probe.sum("obi_redis_keys_total", &[]);
                if keys == expected { Ok(()) } else { Err(keys) }
            },
        )
    };
    set_keys(&mut conn, 0, 5);
    keys_seen(5.0);
    let connections_before = info_field(&mut conn, "total_connections_received");
    let errors_before = info_field(&mut conn, "total_error_replies");
    // Two more polls at least, each seeing keys the one before did not.
    set_keys(&mut conn, 5, 10);
    keys_seen(10.0);
    set_keys(&mut conn, 10, 15);
    keys_seen(15.0);
    assert_eq!(
        info_field(&mut conn, "total_connections_received"),
        connections_before,
        "the polls reuse their connection"
    );
    assert_eq!(
        info_field(&mut conn, "total_error_replies"),
        errors_before,
        "nothing the probe sends is refused"
    );
    assert!(probe.sum("obi_redis_memory_usage_bytes", &[]) > 0.0);
    // The test's own INFO is counted, under its name; the probe's is not.
    for sample in probe.samples() {
        if sample.name.starts_with("obi_redis_commands_total") {
            assert_ne!(sample.label("service_name"), "cache-probe", "{sample:?}");
            assert_ne!(sample.label("service_name"), "unknown", "{sample:?}");
        }
    }
}
