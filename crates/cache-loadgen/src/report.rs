//! What a run measured: per operation, latency histograms (HDR, from each
//! request's scheduled time), status codes and errors; the cache status
//! clients saw; and the rate achieved against the rate scheduled.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::workload::Op;

/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, with
/// three significant digits.
const HIGHEST_MICROS: u64 = 600_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_MICROS, 3).expect("valid histogram bounds")
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer, with the cache headers it carried.
    Answered {
        status: u16,
        cache_status: Option<String>,
        cache_tier: Option<String>,
    },
    /// No answer: connection refused or reset, or `--timeout` passed.
    Failed(String),
}

/// Counts for one operation.
pub struct OpStats {
    latency: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    cache_statuses: BTreeMap<String, u64>,
    cache_tiers: BTreeMap<String, u64>,
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats {
            latency: histogram(),
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            cache_statuses: BTreeMap::new(),
            cache_tiers: BTreeMap::new(),
        }
    }
}

/// Everything recorded in the measured part of a run.
#[derive(Default)]
pub struct Recorder {
    ops: BTreeMap<Op, OpStats>,
}

impl Recorder {
    pub fn record(&mut self, op: Op, latency: Duration, outcome: &Outcome) {
        let stats = self.ops.entry(op).or_default();
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        stats
            .latency
            .saturating_record(micros.clamp(1, HIGHEST_MICROS));
        match outcome {
            Outcome::Answered {
                status,
                cache_status,
                cache_tier,
            } => {
                *stats.statuses.entry(*status).or_default() += 1;
                if let Some(cache) = cache_status {
                    *stats.cache_statuses.entry(cache.clone()).or_default() += 1;
                }
                if let Some(tier) = cache_tier {
                    *stats.cache_tiers.entry(tier.clone()).or_default() += 1;
                }
            }
            Outcome::Failed(why) => *stats.errors.entry(why.clone()).or_default() += 1,
        }
    }

    pub fn report(&self, run: RunFacts) -> Report {
        let seconds = run.measured.as_secs_f64().max(1e-9);
        let ops: BTreeMap<String, OpReport> = self
            .ops
            .iter()
            .map(|(op, stats)| {
                let count = stats.latency.len();
                let quantile = |q: f64| stats.latency.value_at_quantile(q) as f64 / 1000.0;
                (
                    op.name().to_owned(),
                    OpReport {
                        requests: count,
                        rate: count as f64 / seconds,
                        statuses: stats
                            .statuses
                            .iter()
                            .map(|(s, n)| (s.to_string(), *n))
                            .collect(),
                        errors: stats.errors.clone(),
                        latency_ms: Latency {
                            p50: quantile(0.5),
                            p90: quantile(0.9),
                            p99: quantile(0.99),
                            p999: quantile(0.999),
                            max: stats.latency.max() as f64 / 1000.0,
                            mean: stats.latency.mean() / 1000.0,
                        },
                        cache_statuses: stats.cache_statuses.clone(),
                        cache_tiers: stats.cache_tiers.clone(),
                    },
                )
            })
            .collect();
        let requests: u64 = ops.values().map(|o| o.requests).sum();
        let failed: u64 = ops
            .values()
            .map(|o| {
                o.errors.values().sum::<u64>()
                    + o.statuses
                        .iter()
                        .filter(|(s, _)| s.starts_with('5'))
                        .map(|(_, n)| n)
                        .sum::<u64>()
            })
            .sum();
        let (hits, with_status) = ops.values().fold((0, 0), |(h, n), o| {
            (
                h + o.cache_statuses.get("HIT").copied().unwrap_or(0),
                n + o.cache_statuses.values().sum::<u64>(),
            )
        });
        let mut all = histogram();
        for stats in self.ops.values() {
            all.add(&stats.latency).expect("same bounds");
        }
        Report {
            target: run.target,
            pattern: run.pattern,
            duration_s: run.measured.as_secs_f64(),
            warmup_s: run.warmup.as_secs_f64(),
            connections: run.connections,
            scheduled: run.scheduled,
            scheduled_rate: run.scheduled as f64 / seconds,
            requests,
            achieved_rate: run.answered_in_time as f64 / seconds,
            unfinished: run.unfinished,
            error_rate: if requests == 0 {
                0.0
            } else {
                failed as f64 / requests as f64
            },
            client_hit_rate: (with_status > 0).then(|| hits as f64 / with_status as f64),
            latency_ms: Latency {
                p50: all.value_at_quantile(0.5) as f64 / 1000.0,
                p90: all.value_at_quantile(0.9) as f64 / 1000.0,
                p99: all.value_at_quantile(0.99) as f64 / 1000.0,
                p999: all.value_at_quantile(0.999) as f64 / 1000.0,
                max: all.max() as f64 / 1000.0,
                mean: all.mean() / 1000.0,
            },
            ops,
        }
    }
}

/// Facts about the run the recorder does not know.
pub struct RunFacts {
    pub target: String,
    pub pattern: String,
    pub measured: Duration,
    pub warmup: Duration,
    pub connections: usize,
    /// Requests scheduled in the measured part.
    pub scheduled: u64,
    /// Scheduled in the measured part but not finished when the run ended.
    pub unfinished: u64,
    /// Measured requests finished before the measured time was over.
    pub answered_in_time: u64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct OpReport {
    pub requests: u64,
    pub rate: f64,
    pub statuses: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub latency_ms: Latency,
    /// `X-Cache-Status` values seen (`HIT`, `MISS`, `BYPASS`, `STALE`…).
    pub cache_statuses: BTreeMap<String, u64>,
    /// `X-Cache-Tier` values seen (`L1`, `L2`).
    pub cache_tiers: BTreeMap<String, u64>,
}

/// The result of a run (`--json` prints it as is).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Report {
    pub target: String,
    pub pattern: String,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub connections: usize,
    pub scheduled: u64,
    pub scheduled_rate: f64,
    /// Requests of the measured part, answered or failed (some perhaps
    /// after its end, while the last ones were waited for).
    pub requests: u64,
    /// Requests finished within the measured time, per second of it: what
    /// the service sustained (below `scheduled_rate` when overloaded).
    pub achieved_rate: f64,
    pub unfinished: u64,
    /// Failed requests and 5xx answers, over all requests.
    pub error_rate: f64,
    /// `HIT` over all answers with an `X-Cache-Status`, as clients saw it.
    pub client_hit_rate: Option<f64>,
    pub latency_ms: Latency,
    pub ops: BTreeMap<String, OpReport>,
}

impl Report {
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "target {}  pattern {}  {:.1} s measured after {:.1} s warm-up  {} connections",
            self.target, self.pattern, self.duration_s, self.warmup_s, self.connections
        );
        let _ = writeln!(
            out,
            "requests {} ({:.1}/s achieved, {:.1}/s scheduled), unfinished {}, error rate {:.3} %",
            self.requests,
            self.achieved_rate,
            self.scheduled_rate,
            self.unfinished,
            self.error_rate * 100.0
        );
        if let Some(hit_rate) = self.client_hit_rate {
            let _ = writeln!(
                out,
                "cache hit rate seen by clients {:.2} %",
                hit_rate * 100.0
            );
        }
        let _ = writeln!(
            out,
            "\n{:<19} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  statuses",
            "operation", "requests", "rate/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        let all = std::iter::once(("all", None))
            .chain(self.ops.iter().map(|(n, o)| (n.as_str(), Some(o))));
        for (name, op) in all {
            let (requests, rate, latency) = match op {
                Some(op) => (op.requests, op.rate, &op.latency_ms),
                None => (self.requests, self.achieved_rate, &self.latency_ms),
            };
            let mut statuses = String::new();
            if let Some(op) = op {
                for (status, n) in &op.statuses {
                    let _ = write!(statuses, "{status}:{n} ");
                }
                for (error, n) in &op.errors {
                    let _ = write!(statuses, "{error}:{n} ");
                }
                for (cache, n) in &op.cache_statuses {
                    let _ = write!(statuses, "{cache}:{n} ");
                }
                for (tier, n) in &op.cache_tiers {
                    let _ = write!(statuses, "{tier}:{n} ");
                }
            }
            let _ = writeln!(
                out,
                "{name:<19} {requests:>9} {rate:>9.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}  {}",
                latency.p50,
                latency.p90,
                latency.p99,
                latency.p999,
                latency.max,
                statuses.trim_end()
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16, cache: Option<&str>) -> Outcome {
        Outcome::Answered {
            status,
            cache_status: cache.map(str::to_owned),
            cache_tier: cache.filter(|c| *c == "HIT").map(|_| "L2".to_owned()),
        }
    }

    #[test]
    fn quantiles_counts_and_rates() {
        let mut recorder = Recorder::default();
        // 1..=1000 ms, once each: the quantiles are known.
        for ms in 1..=1000 {
            let cache = if ms % 4 == 0 { "MISS" } else { "HIT" };
            recorder.record(
                Op::Get,
                Duration::from_millis(ms),
                &answered(200, Some(cache)),
            );
        }
        for _ in 0..10 {
            recorder.record(Op::Put, Duration::from_millis(2), &answered(503, None));
        }
        recorder.record(
            Op::Put,
            Duration::from_secs(5),
            &Outcome::Failed("timeout".into()),
        );
        let report = recorder.report(RunFacts {
            target: "http://127.0.0.1:8080".into(),
            pattern: "constant".into(),
            measured: Duration::from_secs(10),
            warmup: Duration::ZERO,
            connections: 4,
            scheduled: 1011,
            unfinished: 0,
            answered_in_time: 1011,
        });
        let get = &report.ops["get"];
        assert_eq!(get.requests, 1000);
        let within =
            |value: f64, expected: f64| (value - expected).abs() <= expected * 0.001 + 0.001;
        assert!(within(get.latency_ms.p50, 500.0), "{:?}", get.latency_ms);
        assert!(within(get.latency_ms.p90, 900.0), "{:?}", get.latency_ms);
        assert!(within(get.latency_ms.p99, 990.0), "{:?}", get.latency_ms);
        assert!(within(get.latency_ms.max, 1000.0), "{:?}", get.latency_ms);
        assert_eq!(get.cache_statuses["HIT"], 750);
        assert_eq!(get.cache_tiers["L2"], 750);
        assert_eq!(report.requests, 1011);
        assert!((report.achieved_rate - 101.1).abs() < 1e-9);
        assert!(
            (report.error_rate - 11.0 / 1011.0).abs() < 1e-12,
            "5xx and failures"
        );
        assert_eq!(report.client_hit_rate, Some(0.75));
        assert_eq!(report.ops["put"].errors["timeout"], 1);
        let text = report.text();
        assert!(
            text.contains("cache hit rate seen by clients 75.00 %"),
            "{text}"
        );
        assert!(text.contains("503:10"), "{text}");
        let json = serde_json::to_string(&report).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back.ops["get"].latency_ms, get.latency_ms);
    }
}
