//! The Redis cache (L2), the near cache (L1) and the rules that keep them
//! honest, for any id and value type: what they need of those is
//! [`CacheId`] and [`Cacheable`], nothing of items.
//!
//! Redis' part in the write path (`docs/cache-design.md`, "Writes", step 3)
//! is an `UNLINK` of the key and its lease: deleting the lease voids any fill
//! in progress (fills are a compare-and-set on the lease token). If Redis
//! cannot be reached, the key goes into `DeferredInvalidations`, and reads
//! of it stay away from Redis until the delete has been applied: a network
//! cut or a stalled server, unlike a restart, still holds the old value.
//!
//! In the read path (`docs/cache-design.md`, "The read path") the near cache
//! (`NearCache`) comes first, then Redis, then a load on a miss (lease,
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

// What a user of the engine sees: ids and values, keys, answers, states and
// figures; the machinery stays inside the crate.
pub use crate::breaker::CircuitState;
pub use cacheable::{CacheId, Cacheable};
pub(crate) use deferred::{Applied, DeferredInvalidations};
pub use entry::now_ms;
pub(crate) use entry::{Entry, Freshness, decode};
pub use glob::matches as glob_matches;
pub use key::{CacheKey, KeyError, KeyPattern, KeyPrefix};
pub use l1::L1Config;
// The near cache itself, for tests that look into it (`Catalog::l1`).
#[cfg(feature = "test-hooks")]
pub use l1::{NearCache, Ticket};
#[cfg(not(feature = "test-hooks"))]
pub(crate) use l1::{NearCache, Ticket};
pub(crate) use l2::{Fill, LeaseTry, Overwrite, RedisCache};
pub use link::LinkState;
pub(crate) use link::{RedisFailure, RedisLink};
pub(crate) use refusals::Refusals;
pub use refusals::Refused;
pub(crate) use stats::{CacheStats, LookupResult};
pub use stats::{StatsSnapshot, Totals};

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
