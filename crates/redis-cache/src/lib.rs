//! # redis-cache
//!
//! An item catalogue API that reads through Redis, with a SQL database as the
//! source of truth. Drop-in compatible with the classic Go cache-aside example
//! (same routes, headers and JSON), but built to stay correct when Redis is
//! slow, down, restarted or shared.
//!
//! ## Layout
//!
//! - [`config`]: flags and environment variables, validated into one tree.
//! - [`startup`]: [`Application`] wires everything and runs until shutdown.
//! - [`http`]: routes and their OpenAPI document, JSON errors, conditional
//!   requests, request ids, request logging; serving connections with their
//!   timeouts and cap.
//! - [`catalog`]: the read path (Redis, then a coalesced, leased load from
//!   SQL, then a fill) and the write path (commit, delete in Redis, publish);
//!   the only place they meet.
//! - [`cache`]: the near cache (L1) in this process, and Redis (L2): the
//!   shared connection, commands it refuses, key namespace, entry format,
//!   statistics, and invalidations deferred during outages.
//! - [`invalidation`]: the pub/sub message format, the subscriber, sequence
//!   checks and lag measurement.
//! - [`store`]: SQLite or PostgreSQL, migrations, demo data.
//! - [`breaker`]: the circuit breaker in front of Redis and of the store.
//! - [`domain`]: item ids and items, parsed at the edge.
//! - [`items`]: the catalog of items kept in the store, and their writes.
//! - [`healthcheck`]: `redis-cache healthcheck`, for container health
//!   checks without a shell.
//!
//! ## Life of a request
//!
//! `GET /items/42` is routed by [`http`], whose extractor turns `42` into an
//! [`domain::ItemId`] (or answers 400). [`catalog::Catalog::get`] looks in the
//! near cache (`NearCache`), then asks Redis for `item:42` through
//! `RedisCache`; a fresh entry is returned with `X-Cache-Status: HIT`
//! and `X-Cache-Tier: L1` or `L2`. On a miss the lookup joins a load of the same id
//! already running in this process, or leads one: it takes the lease
//! `item:42:lease` in Redis (or waits for the instance holding it), reads the
//! row from [`store`], and fills `item:42` only if the lease is still its own.
//! If Redis is down or slow the row is read from the store and the answer says
//! `BYPASS`; if the store fails, a stale entry is served as `STALE`. A `PUT`
//! commits to the store first, then deletes `item:42` and its lease in Redis,
//! evicts it from the near cache, publishes the invalidation on
//! `cache:invalidate` (every other instance evicts it from its own near
//! cache), then answers.

pub mod config;
pub mod domain;
pub mod healthcheck;
pub mod http;
pub mod items;
pub mod secret;
pub mod shutdown;
pub mod startup;
pub mod store;
pub mod telemetry;

// The cache engine, under the names this service has always used for its
// parts.
pub use tiered_cache::{backoff, breaker, cache, catalog, invalidation, random};

pub use config::{Cli, Config};
pub use startup::Application;
