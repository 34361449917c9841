//! What the catalog exports to Prometheus: how lookups ended and the other
//! cache counters (since start), the near cache, breakers, link and
//! subscriber states, commands Redis refuses, deferred invalidations, and
//! the registry's timed series ([`crate::telemetry::metrics`]).

use super::{Catalog, NearCacheState, Source};
use crate::cache::{CircuitState, LinkState};
use crate::telemetry::metrics::Exposition;

impl<S: Source> Catalog<S> {
    /// Appends the catalog's families to `out`; `subscribed` is whether the
    /// invalidation subscriber is subscribed now.
    pub async fn render_metrics(&self, out: &mut Exposition, subscribed: bool) {
        // Counting settles moka's pending evictions under a lock: off the runtime.
        let l1_entries = self.near_cache_entries().await;
        let status = self.status();
        let totals = self.totals();
        let t = totals.cache;

        out.family(
            "redis_cache_lookups_total",
            "counter",
            "Lookups (a batch counts each distinct id) by how they ended: hit (tier l1 or l2), miss (loaded through Redis), bypass (loaded without Redis), stale (served past freshness, the source of truth failing) or error (no answer).",
        );
        for (result, tier, value) in [
            ("hit", "l1", t.l1_hits),
            ("hit", "l2", t.l2_hits),
            ("miss", "source", t.loaded),
            ("bypass", "source", t.loaded_bypassing),
            ("stale", "l2", t.stale_served),
            ("error", "none", t.failed),
        ] {
            out.sample(
                "redis_cache_lookups_total",
                &[("result", result), ("tier", tier)],
                value as f64,
            );
        }
        for (name, help, value) in [
            (
                "redis_cache_negative_hits_total",
                "Hits on a cached absence (404 without the source of truth).",
                t.negative_hits,
            ),
            (
                "redis_cache_coalesced_total",
                "Missed lookups that joined a load of the same id already running in this instance.",
                t.coalesced,
            ),
            (
                "redis_cache_lease_waits_total",
                "Missed lookups answered by another instance's fill while it held the lease.",
                t.lease_waits,
            ),
            (
                "redis_cache_fills_total",
                "Values written to Redis (read-through, early refresh, warming).",
                t.fills,
            ),
            (
                "redis_cache_early_refreshes_total",
                "Hot keys reloaded in the background before they expired.",
                t.early_refreshes,
            ),
            (
                "redis_cache_corrupt_values_total",
                "Cached values that could not be decoded (treated as misses).",
                t.corrupt,
            ),
            (
                "redis_cache_source_reads_total",
                "Source-of-truth queries made to answer lookups.",
                t.upstream_fetches,
            ),
            (
                "redis_cache_invalidations_published_total",
                "Invalidation messages this instance published.",
                t.invalidations_published,
            ),
            (
                "redis_cache_invalidations_received_total",
                "Invalidation messages received from other instances and publishers.",
                t.invalidations_received,
            ),
            (
                "redis_cache_invalidation_gaps_total",
                "Times invalidations may have been lost (a sender's sequence gap, or silence): each flushed the near cache.",
                t.invalidation_gaps,
            ),
            (
                "redis_cache_l1_flushes_total",
                "Near cache flushes (lost subscription or connection, sequence gaps).",
                totals.l1_flushes,
            ),
        ] {
            out.counter(name, help, value);
        }

        // A histogram has no maximum.
        let lag = totals.lag.report(std::time::Duration::ZERO);
        out.family(
            "redis_cache_invalidation_lag_seconds",
            "histogram",
            "Time from an invalidation's publication by its sender to its application here.",
        );
        let buckets: Vec<(Option<f64>, u64)> = lag
            .buckets
            .iter()
            .map(|(bound, n)| (bound.map(|ms| ms / 1_000.0), *n))
            .collect();
        out.histogram_from(
            "redis_cache_invalidation_lag_seconds",
            &[],
            &buckets,
            lag.sum_ms / 1_000.0,
        );

        out.gauge(
            "redis_cache_l1_entries",
            "Values held in this instance's near cache.",
            l1_entries as f64,
        );
        out.gauge(
            "redis_cache_l1_usable",
            "1 while the near cache is in use; 0 while it is bypassed (invalidations may be lost) or off.",
            f64::from(u8::from(status.near_cache == NearCacheState::Active)),
        );
        out.family(
            "redis_cache_circuit_breaker_state",
            "gauge",
            "State of the circuit breaker in front of Redis: 1 for the current state.",
        );
        let circuit = status.redis_circuit;
        for candidate in [
            CircuitState::Closed,
            CircuitState::HalfOpen,
            CircuitState::Open,
        ] {
            out.sample(
                "redis_cache_circuit_breaker_state",
                &[("state", candidate.as_str())],
                f64::from(u8::from(circuit == candidate)),
            );
        }
        out.gauge(
            "redis_cache_redis_up",
            "1 while the shared Redis connection is up.",
            f64::from(u8::from(status.redis == LinkState::Connected)),
        );
        out.gauge(
            "redis_cache_subscriber_up",
            "1 while the invalidation subscriber is subscribed.",
            f64::from(u8::from(subscribed)),
        );
        out.family(
            "redis_cache_redis_refused_command",
            "gauge",
            "1 for each command Redis refuses for good (NOPERM from the ACL, or a disabled command), until it is accepted again.",
        );
        for refused in &status.refused {
            out.sample(
                "redis_cache_redis_refused_command",
                &[("command", &refused.command)],
                1.0,
            );
        }
        out.gauge(
            "redis_cache_pending_invalidations",
            "Invalidations waiting for Redis (deferred by an outage).",
            status.deferred_invalidations as f64,
        );
        self.metrics().render_into(out);
    }
}
