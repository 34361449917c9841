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
//! - [`http`]: routes, JSON errors, conditional requests, request logging.
//! - [`catalog`]: the read path (Redis, then SQL, then fill) and the write
//!   path (commit, delete in Redis, publish); the only place they meet.
//! - [`cache`]: Redis itself: the shared connection, key namespace, value
//!   codec, statistics, and invalidations deferred during outages.
//! - [`invalidation`]: the pub/sub message format and the subscriber.
//! - [`store`]: SQLite or PostgreSQL, migrations, demo data.
//! - [`domain`]: item ids and items, parsed at the edge.
//!
//! ## Life of a request
//!
//! `GET /items/42` is routed by [`http`], whose extractor turns `42` into an
//! [`domain::ItemId`] (or answers 400). [`catalog::Catalog::get`] asks Redis for
//! `item:42` through [`cache::RedisCache`]; a hit is decoded and returned
//! with `X-Cache-Status: HIT`. On a miss the row is read from [`store`] and
//! written back with `SET item:42 … PX ttl`. If Redis is down or slow the row is
//! read from the store and the answer says `BYPASS`. A `PUT` commits to the
//! store first, then deletes `item:42` in Redis and publishes the invalidation
//! on `cache:invalidate`, then answers.

pub mod backoff;
pub mod cache;
pub mod catalog;
pub mod config;
pub mod domain;
pub mod http;
pub mod invalidation;
pub mod random;
pub mod secret;
pub mod shutdown;
pub mod startup;
pub mod store;
pub mod telemetry;

pub use config::{Cli, Config};
pub use startup::Application;
