//! The catalog's settings, one struct: what the service's flags set and
//! [`super::Policy`] turns into decisions.

use std::time::Duration;

use crate::cache::{KeyPrefix, L1Config};

/// How the catalog caches: TTLs, leases, coalescing, fail-safe, early
/// refresh, timeouts, the source's breaker, the near cache. Validated by
/// whoever builds it (the service, from its flags).
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub ttl: Duration,
    pub prefix: KeyPrefix,
    pub source_delay: Duration,
    pub warm_on_start: u32,
    /// Zero: negative caching off.
    pub negative_ttl: Duration,
    /// Fraction in `0.0..=0.5`.
    pub ttl_jitter: f64,
    /// Fraction in `0.0..=0.5`; zero: early refresh off.
    pub early_refresh: f64,
    /// Zero: fail-safe off.
    pub stale_if_error: Duration,
    pub lease_ttl: Duration,
    pub leases: bool,
    pub coalescing: bool,
    pub source_timeout: Duration,
    pub failsafe_throttle: Duration,
    /// Longest silence of this instance on the invalidation channel.
    pub heartbeat: Duration,
    /// The database's circuit breaker (PostgreSQL only; zero failures: off).
    pub source_breaker_failures: u32,
    pub source_breaker_cooldown: Duration,
    pub l1: L1Config,
}

impl CacheConfig {
    /// Keys under `prefix`, and otherwise the settings the service starts
    /// with: fresh for 5 minutes (±10 %), absences for 30 s, stale values
    /// served for 10 more minutes while the source fails, refreshed early in
    /// the last 10 % of their freshness, 2 s leases, coalescing, 1 s source
    /// reads, a failing id retried after 2 s, a heartbeat every second, the
    /// source's breaker opened by 2 outages for 1 s, a near cache of 10,000
    /// values (64 MiB) kept 30 s, no warming, no artificial delay.
    pub fn with_prefix(prefix: KeyPrefix) -> Self {
        Self {
            ttl: Duration::from_secs(300),
            prefix,
            source_delay: Duration::ZERO,
            warm_on_start: 0,
            negative_ttl: Duration::from_secs(30),
            ttl_jitter: 0.1,
            early_refresh: 0.1,
            stale_if_error: Duration::from_secs(600),
            lease_ttl: Duration::from_secs(2),
            leases: true,
            coalescing: true,
            source_timeout: Duration::from_secs(1),
            failsafe_throttle: Duration::from_secs(2),
            heartbeat: Duration::from_secs(1),
            source_breaker_failures: 2,
            source_breaker_cooldown: Duration::from_secs(1),
            l1: L1Config {
                capacity: 10_000,
                max_bytes: 64 << 20,
                ttl: Duration::from_secs(30),
            },
        }
    }
}
