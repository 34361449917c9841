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
//! - [`cache`]: the two tiers: the near cache (`cache::NearCache`) and
//!   Redis (`cache::RedisCache` over one multiplexed `cache::RedisLink`),
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
//! Your source of truth implements [`Source`] (values by id, ids worth
//! warming, a ping); then start an [`Engine`] and use its [`Catalog`]:
//!
//! ```no_run
//! # use tiered_cache::cache::{CacheId, Cacheable};
//! # #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, serde::Serialize, serde::Deserialize)]
//! # struct UserId(String);
//! # impl std::fmt::Display for UserId { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(&self.0) } }
//! # impl CacheId for UserId { fn as_str(&self) -> &str { &self.0 } fn parse(raw: &str) -> Option<Self> { Some(UserId(raw.into())) } }
//! # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
//! # struct Profile { id: UserId, name: String, version: i64 }
//! # impl Cacheable for Profile { type Id = UserId; fn id(&self) -> &UserId { &self.id } fn version(&self) -> i64 { self.version } }
//! # #[derive(Debug, thiserror::Error)] #[error("down")] struct Down;
//! # impl tiered_cache::SourceFailure for Down { fn kind(&self) -> &'static str { "down" } fn is_outage(&self) -> bool { true } fn is_unavailable(&self) -> bool { true } }
//! # impl tiered_cache::WriteFailure for Down { fn kind(&self) -> Option<&'static str> { None } fn is_outage(&self) -> bool { true } fn may_have_committed(&self) -> bool { false } fn source_down() -> Self { Down } }
//! # #[derive(Clone)] struct Profiles;
//! # impl Profiles { async fn rename(&self, id: &UserId, name: &str) -> Result<(), Down> { Ok(()) } }
//! # impl Source for Profiles { type Id = UserId; type Value = Profile; type Error = Down;
//! #   async fn get_many(&self, _: &[UserId]) -> Result<Vec<Profile>, Down> { Ok(vec![]) }
//! #   async fn recent_ids(&self, _: u32) -> Result<Vec<UserId>, Down> { Ok(vec![]) }
//! #   async fn ping(&self) -> Result<(), Down> { Ok(()) }
//! #   fn system(&self) -> &'static str { "memory" } fn collection(&self) -> &'static str { "profiles" } fn can_be_down(&self) -> bool { false } }
//! use std::time::Duration;
//! use tiered_cache::cache::KeyPrefix;
//! use tiered_cache::{CacheConfig, Engine, RedisSettings, Source};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let profiles = Profiles; // your source of truth, `impl Source`
//! let config = CacheConfig::with_prefix(KeyPrefix::parse("profile:")?);
//! let redis = RedisSettings::new(redis::Client::open("redis://127.0.0.1/")?, "local");
//! let engine = Engine::start(profiles.clone(), redis, &config, "instance-1", None).await;
//! let cache = engine.catalog();
//!
//! let ada = UserId::parse("ada").unwrap();
//! let found = cache.get(&ada).await?; // near cache, Redis, or one leased load
//! println!("{:?} {}", found.value, found.status.as_str());
//!
//! // A write: your commit, then the key and its lease deleted in Redis,
//! // the near caches of every process told.
//! let (source, id) = (profiles.clone(), ada.clone());
//! cache.write(ada, "UPDATE", async move { source.rename(&id, "Ada L.").await }).await?;
//!
//! engine.shutdown(Duration::from_secs(2)).await;
//! # Ok(())
//! # }
//! ```
//!
//! `examples/profiles.rs` is the whole program, with profiles kept in a map:
//! `cargo run -p tiered-cache --example profiles` against a local Redis
//! (`REDIS_URL`, default `redis://127.0.0.1:6379/`).

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
