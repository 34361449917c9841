//! `Policy`: how long values stay fresh, how long they are kept beyond that,
//! and when a hit triggers an early refresh. Pure arithmetic on times.

use std::time::Duration;

use super::CacheConfig;
use crate::cache::{Cacheable, Entry, Freshness};

#[derive(Debug, Clone)]
pub struct Policy {
    pub ttl: Duration,
    pub negative_ttl: Duration,
    pub jitter: f64,
    pub stale_if_error: Duration,
    pub early_refresh: f64,
    pub lease_ttl: Duration,
    pub leases: bool,
    pub coalescing: bool,
    pub source_delay: Duration,
    pub source_timeout: Duration,
    pub failsafe_throttle: Duration,
}

impl Policy {
    pub fn from_config(config: &CacheConfig) -> Self {
        Self {
            ttl: config.ttl,
            negative_ttl: config.negative_ttl,
            jitter: config.ttl_jitter,
            stale_if_error: config.stale_if_error,
            early_refresh: config.early_refresh,
            lease_ttl: config.lease_ttl,
            leases: config.leases,
            coalescing: config.coalescing,
            source_delay: config.source_delay,
            source_timeout: config.source_timeout,
            failsafe_throttle: config.failsafe_throttle,
        }
    }

    /// The entry to cache for what the source of truth said at `fetched_at`,
    /// and how long Redis should keep it; `None` when absences are not cached.
    /// `fresh_from` is when its freshness starts: `fetched_at` for a miss, the
    /// old entry's expiry for an early refresh, so a key read without pause
    /// costs one source-of-truth read per TTL on average, not more.
    pub fn entry<V: Cacheable>(
        &self,
        value: Option<V>,
        fetched_at: i64,
        fresh_from: i64,
    ) -> Option<(Entry<V>, Duration)> {
        let base = if value.is_some() {
            self.ttl
        } else if self.negative_ttl.is_zero() {
            return None;
        } else {
            self.negative_ttl
        };
        let fresh = jittered(base, self.jitter, crate::random::unit());
        let fresh_until = fresh_from.max(fetched_at) + millis(fresh);
        let keep_for =
            Duration::from_millis((fresh_until - fetched_at).max(1) as u64) + self.stale_if_error;
        Some((
            Entry {
                fetched_at,
                fresh_until,
                value,
            },
            keep_for,
        ))
    }

    /// Whether a hit on `entry` at `now` should refresh it in the background:
    /// in the last `early_refresh` fraction of its freshness.
    pub fn refresh_due<V: Cacheable>(&self, entry: &Entry<V>, now_ms: i64) -> bool {
        if self.early_refresh <= 0.0 {
            return false;
        }
        match entry.freshness(now_ms) {
            Freshness::Fresh { remaining } => {
                remaining <= entry.lifetime().mul_f64(self.early_refresh)
            }
            Freshness::Stale => false,
        }
    }
}

/// `base` spread uniformly over `base × (1 ± jitter)`; `unit` is in `[0, 1)`.
fn jittered(base: Duration, jitter: f64, unit: f64) -> Duration {
    base.mul_f64(1.0 + jitter * (2.0 * unit - 1.0))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{Value, id};

    fn policy() -> Policy {
        Policy {
            ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(30),
            jitter: 0.1,
            stale_if_error: Duration::from_secs(600),
            early_refresh: 0.1,
            lease_ttl: Duration::from_secs(2),
            leases: true,
            coalescing: true,
            source_delay: Duration::ZERO,
            source_timeout: Duration::from_secs(2),
            failsafe_throttle: Duration::from_secs(2),
        }
    }

    fn value() -> Value {
        Value {
            id: id("1"),
            version: 1,
        }
    }

    #[test]
    fn jitter_spreads_within_bounds() {
        let base = Duration::from_secs(100);
        assert_eq!(jittered(base, 0.1, 0.0), Duration::from_secs(90));
        assert_eq!(jittered(base, 0.1, 0.5), base);
        assert!(jittered(base, 0.1, 0.999_999) < Duration::from_secs(110));
        assert_eq!(jittered(base, 0.0, 0.3), base);
    }

    #[test]
    fn values_get_the_ttl_absences_the_negative_ttl_and_both_the_stale_window() {
        let p = policy();
        for _ in 0..100 {
            let (e, keep) = p.entry(Some(value()), 0, 0).unwrap();
            assert!(
                (270_000..330_000).contains(&e.fresh_until),
                "{}",
                e.fresh_until
            );
            assert_eq!(
                keep,
                Duration::from_millis(e.fresh_until as u64) + p.stale_if_error
            );
            let (e, _) = p.entry::<Value>(None, 0, 0).unwrap();
            assert!((27_000..33_000).contains(&e.fresh_until));
        }
        let off = Policy {
            negative_ttl: Duration::ZERO,
            ..policy()
        };
        assert!(off.entry::<Value>(None, 0, 0).is_none());
    }

    #[test]
    fn early_refresh_extends_from_the_old_expiry() {
        let p = Policy {
            jitter: 0.0,
            ..policy()
        };
        let (e, _) = p.entry(Some(value()), 290_000, 300_000).unwrap();
        assert_eq!(e.fresh_until, 600_000);
        assert_eq!(e.fetched_at, 290_000);
    }

    #[test]
    fn refresh_is_due_in_the_last_fraction_only() {
        let p = policy();
        let e: Entry<Value> = Entry {
            fetched_at: 0,
            fresh_until: 100_000,
            value: None,
        };
        assert!(!p.refresh_due(&e, 89_000));
        assert!(p.refresh_due(&e, 90_000));
        assert!(
            !p.refresh_due(&e, 100_000),
            "stale entries are not refreshed in the background"
        );
        let off = Policy {
            early_refresh: 0.0,
            ..policy()
        };
        assert!(!off.refresh_due(&e, 99_000));
    }
}
