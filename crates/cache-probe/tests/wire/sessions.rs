//! Scripted `redis-cli` sessions (transactions, errors, RESP3) and pub/sub,
//! from `redis-cli` and from a Rust client.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::RedisExt as _;
use crate::helpers::{Probe, Redis, assert_commands_match, eventually_blocking};

const SESSION: &str = "\
SET k1 v1
MULTI
INCR counter
GET k1
LPUSH list a b c
EXEC
MULTI
SET k2 v2
DISCARD
MULTI
INCR k1
EXEC
MULTI
NOSUCHCOMMAND
EXEC
GET nosuch
GET
GET list
HSET h f v
HGET h f
HGET h nofield
HGETALL h
HGETALL nohash
ZSCORE z m
TYPE k1
TTL k1
TTL nosuch
EXISTS k1 k2 nosuch
MGET k1 nosuch k2
LRANGE list 0 -1
CONFIG GET maxmemory
CLIENT SETNAME session
PUBLISH nobody hello
AUTH someone secret
PING
DEL k1
";

#[test]
fn cli_sessions_and_transactions_count_as_redis_counts() {
    let redis = Redis::start();
    let probe = Probe::start(&["--redis-port", &redis.port().to_string()]);
    redis.cli(&[], SESSION);
    // The same over RESP3 (redis-cli sends HELLO 3 first): maps, sets and
    // attributes instead of arrays.
    redis.cli(&["-3"], "HSET h2 a 1 b 2\nHGETALL h2\nSADD s x y\nSMEMBERS s\nGET k1\nMGET k1 h2 nope\nMULTI\nINCR n\nEXEC\n");

    // Redis knows no NOSUCHCOMMAND and counts it as no command: the probe
    // reports it refused, apart.
    assert_commands_match(&probe, &redis, || redis.commandstats());
    assert_eq!(
        probe.sum(
            "obi_redis_rejected_commands_total",
            &[("command", "NOSUCHCOMMAND"), ("reason", "unknown")]
        ),
        1.0
    );
    assert_eq!(
        probe.sum(
            "obi_redis_rejected_commands_total",
            &[("command", "GET"), ("reason", "arity")]
        ),
        1.0
    );
    let status = |command: &str, status: &str| {
        probe.sum(
            "obi_redis_commands_total",
            &[
                ("command", command),
                ("status", status),
                ("service_name", "redis-cli"),
            ],
        ) as u64
    };
    assert_eq!(status("HGET", "hit"), 1);
    assert_eq!(status("HGET", "miss"), 1);
    assert_eq!(status("HGETALL", "hit"), 2, "RESP2 array and RESP3 map");
    assert_eq!(status("HGETALL", "miss"), 1);
    assert_eq!(status("GET", "hit"), 1, "k1 (queued, answered by EXEC)");
    assert_eq!(
        status("GET", "miss"),
        2,
        "nosuch, and k1 after DEL over RESP3"
    );
    assert_eq!(status("GET", "error"), 2, "no argument; WRONGTYPE");
    assert_eq!(status("INCR", "error"), 1, "failed inside EXEC");
    assert_eq!(status("TTL", "miss"), 1);
    assert_eq!(status("SMEMBERS", "hit"), 1);
    assert_eq!(status("EXEC", "error"), 1, "EXECABORT");
    // Credentials never reach a label.
    assert!(!probe.exposition().contains("secret"));
}

/// A subscriber started with `redis-cli` (RESP2, or RESP3 with `-3`),
/// returned once it has confirmed its `confirmations` subscriptions.
fn subscriber(redis: &Redis, args: &[&str], confirmations: usize) -> Child {
    let port = redis.port().to_string();
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port])
        .args(args)
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut confirmed = 0;
    while confirmed < confirmations {
        let line = lines.next().expect("the subscriber is running").unwrap();
        if line == "subscribe" || line == "psubscribe" {
            confirmed += 1;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    child
}

#[test]
fn pub_sub_messages_are_counted_as_published_and_delivered() {
    let redis = Redis::start();
    let probe = Probe::start(&["--redis-port", &redis.port().to_string()]);
    let mut subscribers = vec![
        subscriber(&redis, &["subscribe", "news", "sports"], 2),
        subscriber(&redis, &["psubscribe", "n*"], 1),
        subscriber(&redis, &["-3", "subscribe", "news"], 1),
    ];
    // Published from a Rust client, counting the receivers Redis reports.
    let mut publisher = redis.connection();
    let mut delivered = 0;
    let mut published = 0;
    for i in 0..40 {
        for channel in ["news", "sports", "weather"] {
            let receivers: u64 = redis::cmd("PUBLISH")
                .arg(channel)
                .arg(format!("message {i}"))
                .query(&mut publisher)
                .unwrap();
            delivered += receivers;
            published += 1;
        }
    }
    assert_eq!(
        delivered,
        40 * (3 + 1),
        "news: three subscribers, sports: one"
    );
    eventually_blocking("every message counted", Duration::from_secs(10), || {
        let seen = (
            probe.sum(
                "obi_redis_pubsub_messages_total",
                &[("direction", "publish")],
            ) as u64,
            probe.sum(
                "obi_redis_pubsub_messages_total",
                &[("direction", "receive")],
            ) as u64,
        );
        if seen == (published, delivered) {
            Ok(())
        } else {
            Err(seen)
        }
    });
    let received = |channel: &str| {
        probe.sum(
            "obi_redis_pubsub_messages_total",
            &[("direction", "receive"), ("channel", channel)],
        ) as u64
    };
    assert_eq!(received("news"), 120, "two by name, one by pattern");
    assert_eq!(received("sports"), 40);
    for child in &mut subscribers {
        let _ = child.kill();
        let _ = child.wait();
    }
    // SUBSCRIBE with two channels is one command, as for Redis.
    assert_commands_match(&probe, &redis, || redis.commandstats());
}
