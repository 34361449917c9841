//! Which processes the probe follows, and which side of a connection it
//! counts: only clients (`--comm`, `--pid`), connections older than the
//! probe, and a Redis that crashes and comes back mid-run.

use std::collections::BTreeMap;

use crate::helpers::RedisExt as _;
use crate::helpers::{OWN_COMMANDS, Probe, Redis, assert_commands_match, own_name};

/// With `--comm redis-benchmark` only the client is followed: its side of
/// each connection is parsed (requests written, replies read) and must
/// still count exactly what Redis ran for it.
#[test]
fn a_client_followed_alone_counts_exactly() {
    let redis = Redis::start();
    let port = redis.port().to_string();
    let probe = Probe::start(&["--redis-port", &port, "--comm", "redis-benchmark"]);
    // Traffic from another client, which must not be counted.
    redis.cli(&[], "SET other 1\nGET other\n");
    let before = redis.commandstats();
    for pipeline in ["1", "16"] {
        redis.benchmark(&[
            "-t",
            "set,get,incr,lpush,mset",
            "-n",
            "3000",
            "-c",
            "6",
            "-r",
            "300",
            "-P",
            pipeline,
            "-q",
        ]);
    }
    assert_commands_match(&probe, &redis, || delta(&before, &redis.commandstats()));
    assert_eq!(
        probe.sum("obi_redis_commands_total", &[("service_name", "redis-cli")]),
        0.0
    );
}

/// The commands Redis ran since `before`.
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(name, n)| (name.clone(), n - before.get(name).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// A connection opened before the probe started is followed from its next
/// command on, whether the probe was told the client's pid or found the
/// server by its port.
#[test]
fn connections_opened_before_the_probe_are_counted() {
    let redis = Redis::start();
    let mut old = redis.connection();
    redis::cmd("SET")
        .arg("early")
        .arg("1")
        .exec(&mut old)
        .unwrap();
    let port = redis.port().to_string();
    let pid = std::process::id().to_string();
    for args in [
        vec!["--redis-port", &port],
        vec!["--redis-port", &port, "--pid", &pid],
    ] {
        let probe = Probe::start(&args);
        for _ in 0..50 {
            let _: Option<String> = redis::cmd("GET").arg("early").query(&mut old).unwrap();
            let _: Option<String> = redis::cmd("GET").arg("never").query(&mut old).unwrap();
        }
        crate::helpers::eventually_blocking(
            "the old connection's GETs",
            std::time::Duration::from_secs(10),
            || {
                let hits = |status| {
                    probe.sum(
                        "obi_redis_commands_total",
                        &[
                            ("command", "GET"),
                            ("status", status),
                            ("service_name", &own_name()),
                        ],
                    ) as u64
                };
                match (hits("hit"), hits("miss")) {
                    (50, 50) => Ok(()),
                    seen => Err(seen),
                }
            },
        );
    }
}

/// Redis is killed and restarted on the same port mid-run; the probe
/// follows the new server and its new connections: its counts equal what
/// both servers counted.
#[test]
fn a_redis_restarted_mid_run_is_followed() {
    let redis = Redis::start();
    let probe = Probe::start(&["--redis-port", &redis.port().to_string()]);
    redis.benchmark(&["-t", "set,get,lpush", "-n", "2000", "-c", "4", "-q"]);
    assert_commands_match(&probe, &redis, || redis.commandstats());
    let first = probe.commands(redis.port());
    let old_pid = redis.pid();
    redis.restart();
    assert_ne!(redis.pid(), old_pid);
    redis.benchmark(&[
        "-t",
        "set,get,incr",
        "-n",
        "2000",
        "-c",
        "4",
        "-P",
        "8",
        "-q",
    ]);
    assert_commands_match(&probe, &redis, || {
        let mut both = first.clone();
        for (name, n) in redis.commandstats() {
            *both.entry(name).or_default() += n;
        }
        both.retain(|name, _| !OWN_COMMANDS.contains(&name.as_str()));
        both
    });
}
