//! Per-instance cache counters, behind `/stats` and `/metrics`. Every lookup
//! of one id is counted exactly once, as a hit or a miss, whatever fails
//! along the way.
//!
//! The counters only ever grow, as Prometheus counters must; `/stats` shows
//! them since the last `/stats/reset` (see [`crate::telemetry::since_reset`]).

use std::sync::atomic::{AtomicU64, Ordering};

use time::OffsetDateTime;

use crate::telemetry::since_reset::Counted;

/// Declares the counters once: the struct, its totals and its snapshot.
macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),+ $(,)?) => {
        /// The counters, each growing from 0 since start.
        #[derive(Debug, Default)]
        pub struct CacheStats {
            $( $(#[$doc])* pub $name: AtomicU64, )+
        }

        /// The counters' values at one moment.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct Totals {
            $( pub $name: u64, )+
        }

        impl CacheStats {
            /// Every counter since start (for `/metrics`).
            pub fn totals(&self) -> Totals {
                Totals { $( $name: self.$name.load(Ordering::Relaxed), )+ }
            }
        }

        impl Counted for Totals {
            fn minus(&self, earlier: &Totals) -> Totals {
                Totals { $( $name: self.$name.saturating_sub(earlier.$name), )+ }
            }
        }
    };
}

counters! {
    /// Ids looked up, each counted once Redis has answered (or been skipped),
    /// in the same step as the hit or miss it turned out to be; a lookup whose
    /// client hung up before that is not counted at all.
    lookups,
    /// Hits answered by this instance's near cache.
    l1_hits,
    /// Hits answered by Redis. `hits` is the sum of the two.
    l2_hits,
    /// Every lookup that was not a hit, including bypasses.
    misses,
    /// Misses where Redis could not be used at all (down, slow, circuit open,
    /// a deferred delete).
    bypassed,
    /// Hits on a cached absence (answered 404 without the source of truth).
    negative_hits,
    /// Misses that joined a load of the same id already running here.
    coalesced,
    /// Ids another instance was loading (it held the lease) and that were
    /// taken from its fill instead of the source of truth.
    lease_waits,
    /// Answers served past their freshness because the source of truth failed.
    stale_served,
    /// Misses that got no answer at all (503: the source of truth failed
    /// and nothing usable was cached).
    failed,
    /// Misses answered by a load through Redis (`miss` in `/metrics`).
    loaded,
    /// Misses answered without Redis (`bypass` in `/metrics`).
    loaded_bypassing,
    /// Background refreshes of hot keys before they expired.
    early_refreshes,
    /// Values written to Redis after a miss (read-through, refresh, warming).
    fills,
    /// Cached values that could not be decoded and were treated as misses.
    corrupt,
    /// Queries sent to the source of truth to answer lookups.
    upstream_fetches,
    invalidations_published,
    invalidations_received,
    /// Times invalidations may have been lost: a gap in a sender's sequence,
    /// or a sender gone silent (each flushed the near cache).
    invalidation_gaps,
}

/// The counters as `/stats` shows them: since the last reset.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatsSnapshot {
    pub hits: u64,
    pub l1_hits: u64,
    pub l2_hits: u64,
    pub misses: u64,
    pub hit_rate: f64,
    pub lookups: u64,
    pub bypassed: u64,
    pub negative_hits: u64,
    pub coalesced: u64,
    pub lease_waits: u64,
    pub stale_served: u64,
    pub failed: u64,
    pub early_refreshes: u64,
    pub fills: u64,
    pub corrupt_values: u64,
    pub upstream_fetches: u64,
    pub invalidations_published: u64,
    pub invalidations_received: u64,
    pub invalidation_gaps: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub since: OffsetDateTime,
}

/// How a missed lookup ended, for `/metrics`: counted exactly once per
/// lookup, when its answer is known (hits are counted when classified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupResult {
    /// Answered by a load through Redis.
    Miss,
    /// Answered without Redis.
    Bypass,
    /// Answered past its freshness (the source of truth failed).
    Stale,
    /// Not answered.
    Error,
}

impl CacheStats {
    pub fn bump(counter: &AtomicU64) {
        Self::add(counter, 1);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts how a missed lookup ended (hits are counted when classified).
    pub fn ended(&self, result: LookupResult) {
        let counter = match result {
            LookupResult::Miss => &self.loaded,
            LookupResult::Bypass => &self.loaded_bypassing,
            LookupResult::Stale => &self.stale_served,
            LookupResult::Error => &self.failed,
        };
        Self::bump(counter);
    }
}

impl Totals {
    /// These counts as `/stats` shows them, counted from `since`.
    pub fn report(&self, since: OffsetDateTime) -> StatsSnapshot {
        let t = self;
        let hits = t.l1_hits + t.l2_hits;
        let answered = hits + t.misses;
        StatsSnapshot {
            hits,
            l1_hits: t.l1_hits,
            l2_hits: t.l2_hits,
            misses: t.misses,
            hit_rate: if answered == 0 {
                0.0
            } else {
                hits as f64 / answered as f64
            },
            lookups: t.lookups,
            bypassed: t.bypassed,
            negative_hits: t.negative_hits,
            coalesced: t.coalesced,
            lease_waits: t.lease_waits,
            stale_served: t.stale_served,
            failed: t.failed,
            early_refreshes: t.early_refreshes,
            fills: t.fills,
            corrupt_values: t.corrupt,
            upstream_fetches: t.upstream_fetches,
            invalidations_published: t.invalidations_published,
            invalidations_received: t.invalidations_received,
            invalidation_gaps: t.invalidation_gaps,
            since,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::since_reset::SinceReset;

    #[test]
    fn hit_rate_is_zero_without_lookups_and_a_ratio_otherwise() {
        let stats = CacheStats::default();
        let now = OffsetDateTime::now_utc();
        assert_eq!(stats.totals().report(now).hit_rate, 0.0);
        CacheStats::add(&stats.lookups, 4);
        CacheStats::add(&stats.l1_hits, 1);
        CacheStats::add(&stats.l2_hits, 2);
        CacheStats::bump(&stats.misses);
        let snap = stats.totals().report(now);
        assert_eq!((snap.lookups, snap.hit_rate), (4, 0.75));
    }

    #[test]
    fn a_reset_starts_stats_afresh_but_totals_keep_growing() {
        let stats = CacheStats::default();
        let view = SinceReset::<Totals>::default();
        CacheStats::add(&stats.lookups, 4);
        view.reset(stats.totals());
        assert_eq!(view.since(&stats.totals()).0.lookups, 0);
        CacheStats::bump(&stats.lookups);
        assert_eq!(view.since(&stats.totals()).0.lookups, 1);
        assert_eq!(stats.totals().lookups, 5, "what /metrics reports");
    }
}
