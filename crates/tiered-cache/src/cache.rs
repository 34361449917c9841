//! The Redis cache (L2), the near cache (L1) and the rules that keep them
//! honest, for any id and value type: what they need of those is
//! [`CacheId`] and [`Cacheable`], nothing of items.
//!
//! Redis' part in the write path (`docs/cache-design.md`, "Writes", step 3)
//! is an `UNLINK` of the key and its lease: deleting the lease voids any fill
//! in progress (fills are a compare-and-set on the lease token). If Redis
//! cannot be reached, the key goes into [`DeferredInvalidations`], and reads
//! of it stay away from Redis until the delete has been applied: a network
//! cut or a stalled server, unlike a restart, still holds the old value.
//!
//! In the read path (`docs/cache-design.md`, "The read path") the near cache
//! ([`NearCache`]) comes first, then Redis, then a load on a miss (lease,
//! source of truth, leased fill; see `catalog`). Any Redis failure turns into
//! a bypass: the answer comes from the source of truth and is marked
//! `BYPASS`, and nothing is filled.

mod cacheable;
#[cfg(test)]
pub(crate) use cacheable::testing;
mod deferred;
mod entry;
mod glob;
mod key;
mod l1;
mod l2;
mod link;
mod refusals;
mod stats;

pub use crate::breaker::{Breaker, CircuitState};
pub use cacheable::{CacheId, Cacheable};
pub use deferred::{Applied, DeferredInvalidations};
pub use entry::{DecodeError, Entry, Freshness, decode, now_ms};
pub use glob::matches as glob_matches;
pub use key::{CacheKey, KeyError, KeyPattern, KeyPrefix};
pub use l1::{L1Config, NearCache, Ticket};
pub use l2::{Fill, LeaseTry, Overwrite, RedisCache};
pub use link::{LinkState, RedisFailure, RedisLink};
pub use refusals::{Refusals, Refused};
pub use stats::{CacheStats, LookupResult, StatsSnapshot, Totals};

/// How a lookup was answered, as reported in `X-Cache-Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
    /// Redis could not be used; the source of truth answered.
    Bypass,
    /// The source of truth failed; a value past its freshness was served.
    Stale,
}

/// Which cache answered a hit, as reported in `X-Cache-Tier`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// This instance's near cache.
    L1,
    /// Redis.
    L2,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::L1 => "L1",
            Tier::L2 => "L2",
        }
    }
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Bypass => "BYPASS",
            CacheStatus::Stale => "STALE",
        }
    }
}
