//! # tiered-cache
//!
//! A read-through cache in two tiers, a near cache in each process (L1) and
//! Redis shared by every process (L2), in front of a source of truth you
//! describe with one small trait ([`catalog::Source`]). It knows nothing of
//! what it caches beyond an id and a version ([`cache::CacheId`],
//! [`cache::Cacheable`]), and it keeps the guarantees that the usual
//! cache-aside code loses under races and faults:
//!
//! - **no stale set**: a miss takes a short lease in Redis before it reads
//!   the source, and fills only if the lease is still its own; a write
//!   deletes the key with its lease, which voids every fill in progress, so
//!   a value read before a write is never cached after it;
//! - **one read per miss**: concurrent misses of one id share one load in a
//!   process (coalescing) and, through the lease, across processes;
//! - **no lost invalidation goes unnoticed**: writes are announced on a
//!   pub/sub channel with per-sender sequence numbers and heartbeats; a gap,
//!   a silent sender or a lost subscription flushes the near cache and
//!   bypasses it until the channel is healthy again;
//! - **Redis is never a dependency**: Redis down, slow or refusing commands
//!   means answers from the source (`BYPASS`), behind a circuit breaker;
//!   deletes Redis could not take are remembered and applied when it is
//!   back, and until then their keys are not read from Redis;
//! - **fail-safe**: with the source failing, values past their freshness
//!   are served (`STALE`) within a window; absent ids are cached too
//!   (negative caching), TTLs are jittered, hot keys are refreshed early.
//!
//! ## Layout
//!
//! - [`engine`]: [`engine::Engine::start`] builds a catalog over your source
//!   and Redis and starts its background tasks; `shutdown` stops them.
//! - [`catalog`]: what you call, [`catalog::Catalog`]: the read path
//!   (lookups, loads under leases, fills), the write path (a commit, then
//!   the steps that keep the caches honest), receiving invalidations,
//!   maintenance (warming, polling), and a read-only status.
//! - [`cache`]: the two tiers: the near cache ([`cache::NearCache`]) and
//!   Redis ([`cache::RedisCache`] over one multiplexed [`cache::RedisLink`]),
//!   the key namespace, the stored entry format, counters, and the
//!   invalidations deferred during an outage.
//! - [`invalidation`]: the pub/sub message format, the publisher, the
//!   subscriber, sequence checks and lag.
//! - [`breaker`], [`backoff`], [`random`]: the circuit breaker in front of
//!   Redis and of the source, bounded exponential backoff, jitter.
//! - [`telemetry`]: the engine's metrics, spans, and "since the last reset".
//!
//! ## Life of a lookup
//!
//! [`catalog::Catalog::get`] looks in the near cache, then asks Redis for
//! `<prefix><id>`. On a miss it joins a load of the same id already running
//! in this process, or leads one: it takes the lease `<prefix><id>:lease`
//! (or waits for the process holding it), reads the source once for every
//! id of the load, and fills Redis only if the lease is still its own. A
//! write ([`catalog::Catalog::write`]) commits through your closure, then
//! deletes the key and its lease, evicts the near cache, and publishes the
//! invalidation every other process applies to its own near cache.
//!
//! `docs/cache-design.md` in the repository walks through each race and the
//! test that fails without the mechanism that closes it.
//!
//! ## Example
//!
//! `examples/profiles.rs` caches user profiles kept in a map (run it against
//! a local Redis: `cargo run -p tiered-cache --example profiles`).

pub mod backoff;
pub mod breaker;
pub mod cache;
pub mod catalog;
pub mod engine;
pub mod invalidation;
pub mod random;
pub mod telemetry;

pub use catalog::{CacheConfig, Catalog, Source, SourceFailure, WriteFailure};
pub use engine::{Engine, RedisSettings};
