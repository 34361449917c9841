//! The catalog's settings, one struct: what the service's flags set and
//! [`super::Policy`] turns into decisions.

use std::time::Duration;

use crate::cache::{KeyPrefix, L1Config};

/// How the catalog caches: TTLs, leases, coalescing, fail-safe, early
/// refresh, timeouts, the source's breaker, the near cache. Validated by
/// whoever builds it (the service, from its flags).
#[derive(Debug, Clone)]
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
