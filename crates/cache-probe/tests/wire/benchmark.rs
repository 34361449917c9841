//! `redis-benchmark` workloads, plain and pipelined, from several clients:
//! every command the probe reports is one Redis executed (or refused), and
//! every key lookup one Redis counted as a keyspace hit or miss.

use std::time::Duration;

use crate::helpers::RedisExt as _;
use crate::helpers::{Probe, Redis, assert_commands_match, eventually_blocking};

/// Commands whose key lookups Redis counts and the probe reports, plus
/// writes (which Redis does not count as lookups).
const TESTS: &str = "ping,set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,mset";

#[test]
fn benchmark_counts_equal_redis_commandstats() {
    let redis = Redis::start();
    let probe = Probe::start(&["--redis-port", &redis.port().to_string()]);
    for pipeline in ["1", "16"] {
        redis.benchmark(&[
            "-t", TESTS, "-n", "3000", "-c", "8", "-r", "500", "-P", pipeline, "-q",
        ]);
        // MGET with keys that exist and keys that never do, and EXISTS.
        redis.benchmark(&[
            "-n",
            "2000",
            "-c",
            "4",
            "-r",
            "500",
            "-P",
            pipeline,
            "-q",
            "MGET",
            "key:__rand_int__",
            "nosuch:__rand_int__",
            "key:__rand_int__",
        ]);
        redis.benchmark(&[
            "-n",
            "1000",
            "-c",
            "4",
            "-r",
            "500",
            "-P",
            pipeline,
            "-q",
            "EXISTS",
            "key:__rand_int__",
            "counter:__rand_int__",
            "nosuch",
        ]);
    }
    assert_commands_match(&probe, &redis, || redis.commandstats());
    // At least what was asked for (pipelines round the count up).
    let commands = probe.commands(redis.port());
    assert!(
        commands["GET"] >= 6000 && commands["MGET"] >= 4000,
        "{commands:?}"
    );

    eventually_blocking(
        "key lookups to equal keyspace hits and misses",
        Duration::from_secs(10),
        || {
            let (seen, counted) = (probe.key_lookups(redis.port()), redis.keyspace());
            if seen == counted {
                Ok(())
            } else {
                Err((seen, counted))
            }
        },
    );
    let (hits, misses) = probe.key_lookups(redis.port());
    assert!(
        hits > 1000 && misses > 4000,
        "both kinds: {hits} hits, {misses} misses"
    );

    // The client is named, the server is the one watched, and the kernel
    // lost nothing.
    assert_eq!(
        probe.sum(
            "obi_redis_commands_total",
            &[
                ("service_name", "redis-benchmark"),
                ("server_address", "127.0.0.1")
            ]
        ) as u64,
        commands.values().sum::<u64>(),
        "every command came from redis-benchmark"
    );
    assert_eq!(probe.sum("obi_probe_events_lost_total", &[]), 0.0);
    assert_eq!(probe.sum("obi_probe_parse_resyncs_total", &[]), 0.0);
    // Pipelines were seen as such.
    let deep = probe.sum(
        "obi_redis_pipeline_depth_bucket",
        &[("service_name", "redis-benchmark"), ("le", "8")],
    );
    let all = probe.sum(
        "obi_redis_pipeline_depth_count",
        &[("service_name", "redis-benchmark")],
    );
    assert!(
        all > deep,
        "bursts of more than 8 commands: {deep} of {all} at most 8"
    );
}
