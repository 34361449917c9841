//! What every crate's integration tests start and wait on, in one place:
//! servers of the test's own on free ports (`redis-server`, a throwaway
//! PostgreSQL cluster, Prometheus, an OTLP/HTTP receiver, the service
//! itself from its real command line), each gone when the test is, and the
//! one way tests wait for something to happen.
//!
//! Nothing here uses a server already running on the machine: tests run in
//! parallel, and on machines that have none.

pub mod otlp;
mod port;
pub mod postgres;
mod process;
pub mod prometheus;
pub mod redis;
pub mod service;
mod wait;

pub use port::free_port;
pub use process::kill_with_parent;
pub use prometheus::Prometheus;
pub use redis::{CommandStats, Redis, RedisOptions};
pub use service::Service;
pub use wait::{PATIENCE, eventually, eventually_blocking, eventually_within};
