//! `LagHistogram`: how long invalidations take from being published by one
//! instance to being applied by another, in fixed buckets suited to the
//! sub-millisecond latencies of pub/sub on a local network. Lock-free:
//! recorded on the subscriber task, read by `/stats`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::telemetry::since_reset::Counted;

/// Upper bounds of the buckets, in milliseconds; one more bucket holds the rest.
pub const BUCKETS_MS: [f64; 14] = [
    0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 5_000.0, 30_000.0,
];

#[derive(Default)]
pub struct LagHistogram {
    counts: [AtomicU64; BUCKETS_MS.len() + 1],
    sum_micros: AtomicU64,
    /// The longest lag since the last `/stats/reset`. A maximum is no
    /// count that a reset could subtract: it is the one figure a reset
    /// starts afresh.
    max_micros: AtomicU64,
}

/// The histogram's counts at one moment: lags per bucket (not cumulative)
/// and their sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LagCounts {
    counts: [u64; BUCKETS_MS.len() + 1],
    sum_micros: u64,
}

impl Counted for LagCounts {
    fn minus(&self, earlier: &Self) -> Self {
        Self {
            counts: std::array::from_fn(|i| self.counts[i].saturating_sub(earlier.counts[i])),
            sum_micros: self.sum_micros.saturating_sub(earlier.sum_micros),
        }
    }
}

/// A copy for `/stats`: cumulative counts per upper bound, as Prometheus
/// histograms have them, plus percentiles read off the buckets (each is the
/// upper bound of the bucket the percentile falls in).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LagSnapshot {
    pub count: u64,
    pub sum_ms: f64,
    pub max_ms: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// `[upper bound in ms (null: +Inf), lags up to it]`, cumulative.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<Option<f64>>>))]
    pub buckets: Vec<(Option<f64>, u64)>,
}

impl LagHistogram {
    pub fn record(&self, lag: Duration) {
        let ms = lag.as_secs_f64() * 1_000.0;
        let bucket = BUCKETS_MS
            .iter()
            .position(|&bound| ms <= bound)
            .unwrap_or(BUCKETS_MS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
    }

    /// Starts the maximum afresh (the counts are never reset).
    pub fn restart_max(&self) {
        self.max_micros.store(0, Ordering::Relaxed);
    }

    pub fn counts(&self) -> LagCounts {
        LagCounts {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
        }
    }

    /// The longest lag recorded since the last [`LagHistogram::restart_max`].
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_micros.load(Ordering::Relaxed))
    }
}

impl LagCounts {
    /// These counts for `/stats` and `/metrics`, with the longest lag of
    /// the same period.
    pub fn report(&self, max: Duration) -> LagSnapshot {
        let counts = &self.counts;
        let count: u64 = counts.iter().sum();
        let mut cumulative = 0;
        let buckets: Vec<(Option<f64>, u64)> = counts
            .iter()
            .enumerate()
            .map(|(i, n)| {
                cumulative += n;
                (BUCKETS_MS.get(i).copied(), cumulative)
            })
            .collect();
        let percentile = |q: f64| {
            let rank = (q * count as f64).ceil().max(1.0) as u64;
            buckets
                .iter()
                .find(|(_, up_to)| *up_to >= rank)
                .map(|(bound, _)| bound.unwrap_or(f64::INFINITY))
                .filter(|_| count > 0)
        };
        LagSnapshot {
            count,
            sum_ms: self.sum_micros as f64 / 1_000.0,
            max_ms: max.as_secs_f64() * 1_000.0,
            p50_ms: percentile(0.5),
            p99_ms: percentile(0.99),
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_percentiles_are_bucket_bounds() {
        let lag = LagHistogram::default();
        assert_eq!(lag.counts().report(lag.max()).p50_ms, None);
        for _ in 0..98 {
            lag.record(Duration::from_micros(300));
        }
        lag.record(Duration::from_millis(40));
        lag.record(Duration::from_secs(60));
        let snap = lag.counts().report(lag.max());
        assert_eq!(snap.count, 100);
        assert_eq!(snap.p50_ms, Some(0.5));
        assert_eq!(snap.p99_ms, Some(50.0));
        assert_eq!(snap.max_ms, 60_000.0);
        assert_eq!(snap.buckets[0], (Some(0.25), 0));
        assert_eq!(snap.buckets[1], (Some(0.5), 98));
        assert_eq!(snap.buckets.last(), Some(&(None, 100)));
        let before = lag.counts();
        lag.restart_max();
        lag.record(Duration::from_millis(3));
        let since = lag.counts().minus(&before).report(lag.max());
        assert_eq!((since.count, since.max_ms), (1, 3.0));
        assert_eq!(since.buckets[4], (Some(5.0), 1));
    }
}
