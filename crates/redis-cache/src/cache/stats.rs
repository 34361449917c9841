//! Per-instance lookup counters behind `/stats`. Every lookup of one id is
//! counted exactly once, as a hit or a miss, whatever fails along the way.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use time::OffsetDateTime;

#[derive(Debug)]
pub struct CacheStats {
    /// Ids looked up, each counted once Redis has answered (or been skipped),
    /// in the same step as the hit or miss it turned out to be; a lookup whose
    /// client hung up before that is not counted at all.
    pub lookups: AtomicU64,
    /// Hits answered by this instance's near cache.
    pub l1_hits: AtomicU64,
    /// Hits answered by Redis. `hits` is the sum of the two.
    pub l2_hits: AtomicU64,
    /// Every lookup that was not answered by Redis, including bypasses.
    pub misses: AtomicU64,
    /// Misses where Redis could not be used at all (down, slow, circuit open,
    /// a delete pending).
    pub bypassed: AtomicU64,
    /// Hits on a cached absence (answered 404 without the source of truth).
    pub negative_hits: AtomicU64,
    /// Misses that joined a load of the same id already running here.
    pub coalesced: AtomicU64,
    /// Ids another instance was loading (it held the lease) and that were
    /// taken from its fill instead of the source of truth.
    pub lease_waits: AtomicU64,
    /// Answers served past their freshness because the source of truth failed.
    pub stale_served: AtomicU64,
    /// Background refreshes of hot keys before they expired.
    pub early_refreshes: AtomicU64,
    /// Values written to Redis after a miss (read-through and warming).
    pub fills: AtomicU64,
    /// Cached values that could not be decoded and were treated as misses.
    pub corrupt: AtomicU64,
    /// Queries sent to the source of truth to answer lookups.
    pub upstream_fetches: AtomicU64,
    pub invalidations_published: AtomicU64,
    pub invalidations_received: AtomicU64,
    /// Sequence gaps seen in a sender's invalidations (each flushed the near cache).
    pub invalidation_gaps: AtomicU64,
    since: Mutex<OffsetDateTime>,
}

impl Default for CacheStats {
    fn default() -> Self {
        Self {
            lookups: AtomicU64::new(0),
            l1_hits: AtomicU64::new(0),
            l2_hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bypassed: AtomicU64::new(0),
            negative_hits: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            lease_waits: AtomicU64::new(0),
            stale_served: AtomicU64::new(0),
            early_refreshes: AtomicU64::new(0),
            fills: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            upstream_fetches: AtomicU64::new(0),
            invalidations_published: AtomicU64::new(0),
            invalidations_received: AtomicU64::new(0),
            invalidation_gaps: AtomicU64::new(0),
            since: Mutex::new(OffsetDateTime::now_utc()),
        }
    }
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
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
    pub early_refreshes: u64,
    pub fills: u64,
    pub corrupt_values: u64,
    pub upstream_fetches: u64,
    pub invalidations_published: u64,
    pub invalidations_received: u64,
    pub invalidation_gaps: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

impl CacheStats {
    pub fn bump(counter: &AtomicU64) {
        Self::add(counter, 1);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (l1_hits, l2_hits) = (load(&self.l1_hits), load(&self.l2_hits));
        let (hits, misses) = (l1_hits + l2_hits, load(&self.misses));
        let answered = hits + misses;
        StatsSnapshot {
            hits,
            l1_hits,
            l2_hits,
            misses,
            hit_rate: if answered == 0 {
                0.0
            } else {
                hits as f64 / answered as f64
            },
            lookups: load(&self.lookups),
            bypassed: load(&self.bypassed),
            negative_hits: load(&self.negative_hits),
            coalesced: load(&self.coalesced),
            lease_waits: load(&self.lease_waits),
            stale_served: load(&self.stale_served),
            early_refreshes: load(&self.early_refreshes),
            fills: load(&self.fills),
            corrupt_values: load(&self.corrupt),
            upstream_fetches: load(&self.upstream_fetches),
            invalidations_published: load(&self.invalidations_published),
            invalidations_received: load(&self.invalidations_received),
            invalidation_gaps: load(&self.invalidation_gaps),
            since: *self.since.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    pub fn reset(&self) {
        for counter in [
            &self.lookups,
            &self.l1_hits,
            &self.l2_hits,
            &self.misses,
            &self.bypassed,
            &self.negative_hits,
            &self.coalesced,
            &self.lease_waits,
            &self.stale_served,
            &self.early_refreshes,
            &self.fills,
            &self.corrupt,
            &self.upstream_fetches,
            &self.invalidations_published,
            &self.invalidations_received,
            &self.invalidation_gaps,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        *self.since.lock().unwrap_or_else(|e| e.into_inner()) = OffsetDateTime::now_utc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_rate_is_zero_without_lookups_and_a_ratio_otherwise() {
        let stats = CacheStats::default();
        assert_eq!(stats.snapshot().hit_rate, 0.0);
        CacheStats::add(&stats.lookups, 4);
        CacheStats::add(&stats.l1_hits, 1);
        CacheStats::add(&stats.l2_hits, 2);
        CacheStats::bump(&stats.misses);
        let snap = stats.snapshot();
        assert_eq!((snap.lookups, snap.hit_rate), (4, 0.75));
        stats.reset();
        assert_eq!(stats.snapshot().lookups, 0);
    }
}
