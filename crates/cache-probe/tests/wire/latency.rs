//! The probe's command latency against the client's own measurement.

use std::time::Duration;

use crate::helpers::RedisExt as _;
use crate::helpers::{Probe, Redis, eventually_blocking};

/// How far the probe's median may be from `redis-benchmark`'s: the probe
/// times from the end of the client's `write` to the end of its `read`,
/// the benchmark from just before its write to just after its read, and the
/// probe's median is interpolated within a histogram bucket (50 to 75 µs
/// here). Measured on the development machine: 0.87.
const TOLERANCE: f64 = 0.35;

#[test]
fn the_median_get_latency_agrees_with_the_clients_own() {
    let redis = Redis::start();
    let probe = Probe::start(&[
        "--redis-port",
        &redis.port().to_string(),
        "--comm",
        "redis-benchmark",
    ]);
    redis.benchmark(&["-t", "set", "-n", "1000", "-r", "100", "-q"]);
    // Ten clients queue on the single-threaded server: the median is well
    // above the first bucket (25 µs), where it could not be resolved.
    let csv = redis.benchmark(&["-t", "get", "-n", "20000", "-c", "10", "-r", "100", "--csv"]);
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",…
    let row = csv
        .lines()
        .find(|line| line.starts_with("\"GET\""))
        .unwrap_or_else(|| panic!("no GET row in {csv}"));
    let fields: Vec<f64> = row
        .split(',')
        .skip(1)
        .map(|f| f.trim_matches('"').parse().unwrap())
        .collect();
    let client_p50 = fields[3] / 1000.0;

    let labels = [("command", "GET"), ("service_name", "redis-benchmark")];
    eventually_blocking("every GET timed", Duration::from_secs(10), || {
        match probe.sum("obi_redis_command_duration_seconds_count", &labels) as u64 {
            20000 => Ok(()),
            seen => Err(seen),
        }
    });
    let probe_p50 = median(&probe, &labels);
    let ratio = probe_p50 / client_p50;
    eprintln!(
        "GET p50: probe {:.1} µs, redis-benchmark {:.1} µs (ratio {ratio:.2})",
        probe_p50 * 1e6,
        client_p50 * 1e6
    );
    assert!(
        (1.0 - TOLERANCE..=1.0 + TOLERANCE).contains(&ratio),
        "probe p50 {:.1} µs, redis-benchmark p50 {:.1} µs",
        probe_p50 * 1e6,
        client_p50 * 1e6
    );
}

/// The median of a histogram, interpolated linearly within its bucket as
/// Prometheus' `histogram_quantile` does.
fn median(probe: &Probe, labels: &[(&str, &str)]) -> f64 {
    let mut buckets: Vec<(f64, f64)> = probe
        .samples()
        .into_iter()
        .filter(|s| {
            s.name == "obi_redis_command_duration_seconds_bucket"
                && labels.iter().all(|(k, v)| s.label(k) == *v)
        })
        .map(|s| (s.label("le").parse::<f64>().unwrap(), s.value))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().unwrap().1;
    let rank = total / 2.0;
    let (mut lower, mut below) = (0.0, 0.0);
    for (upper, count) in buckets {
        if count >= rank {
            return lower + (upper - lower) * (rank - below) / (count - below);
        }
        (lower, below) = (upper, count);
    }
    unreachable!("the +Inf bucket holds every sample")
}
