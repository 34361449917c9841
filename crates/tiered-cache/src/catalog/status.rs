//! A read-only view of the engine's state, for `/health`, `/stats` and
//! `/metrics`: what they report, without reaching into the parts that hold
//! it (the Redis link, its breaker and refusals, the near cache, the
//! deferred invalidations, the source of truth).

use std::time::Duration;

use super::{Catalog, Source};
use crate::breaker::CircuitState;
use crate::cache::{LinkState, Refused};

/// Bound on the database check, so a hung database gives a quick answer.
const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The engine's state at one moment.
#[derive(Debug, Clone)]
pub struct Status {
    /// The shared Redis connection.
    pub redis: LinkState,
    /// The breaker in front of Redis.
    pub redis_circuit: CircuitState,
    /// The breaker in front of the source of truth.
    pub database_circuit: CircuitState,
    /// Commands Redis refuses for good, until it accepts them again.
    pub refused: Vec<Refused>,
    /// Invalidations waiting for Redis.
    /// Deferred invalidations (exported as `pending_invalidations`).
    pub deferred_invalidations: usize,
    /// Redis round trips since start.
    pub redis_round_trips: u64,
    pub near_cache: NearCacheState,
}

/// Whether the near cache answers lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NearCacheState {
    /// Configured away (`L1_CAPACITY=0`).
    Off,
    /// In use.
    Active,
    /// Bypassed while invalidations may be lost.
    Bypassed,
}

impl NearCacheState {
    pub fn as_str(self) -> &'static str {
        match self {
            NearCacheState::Off => "off",
            NearCacheState::Active => "active",
            NearCacheState::Bypassed => "bypassed",
        }
    }
}

impl<S: Source> Catalog<S> {
    pub fn status(&self) -> Status {
        let l1 = self.l1();
        let link = self.l2().link();
        Status {
            redis: link.state(),
            redis_circuit: link.circuit(),
            database_circuit: self.source_circuit(),
            refused: link.refusals().list(),
            deferred_invalidations: self.deferred().len(),
            redis_round_trips: self.l2().round_trips(),
            near_cache: if !l1.is_enabled() {
                NearCacheState::Off
            } else if l1.is_usable() {
                NearCacheState::Active
            } else {
                NearCacheState::Bypassed
            },
        }
    }

    /// Values held in the near cache. Counting settles moka's pending
    /// evictions under a lock: done off the runtime.
    pub async fn near_cache_entries(&self) -> u64 {
        let catalog = self.clone();
        tokio::task::spawn_blocking(move || catalog.l1().entry_count())
            .await
            .unwrap_or_default()
    }

    /// Whether Redis answers a `PING` right now (and its breaker lets it be
    /// asked).
    pub async fn redis_answers(&self) -> bool {
        self.l2().ping().await
    }

    /// Whether the source of truth answers a trivial query within 2 s.
    pub async fn database_answers(&self) -> bool {
        matches!(
            tokio::time::timeout(DATABASE_CHECK_TIMEOUT, self.source().ping()).await,
            Ok(Ok(()))
        )
    }
}
