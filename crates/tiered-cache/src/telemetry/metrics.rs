//! The cache engine's timed series, in the Prometheus text exposition
//! format: calls to the source of truth and to Redis, the calls skipped by
//! their breakers, the commands sent to Redis, and what polling Redis found.
//!
//! A small registry of our own rather than a process-wide recorder: every
//! label value comes from an enum or a fixed list, so label cardinality is
//! bounded by construction; and each catalog has its own registry (the
//! tests run several instances in one process). Names follow Prometheus
//! conventions and, where one exists, the OpenTelemetry semantic
//! conventions (`db.client.operation.duration` covers the source of truth
//! and Redis alike).
//!
//! Histograms use explicit buckets: from 100 µs for Redis and database calls
//! on a local network, up to 10 s for calls stuck behind a timeout.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use prometheus_text::{Exposition, Histogram};

/// Upper bounds of request and database-call latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct DbSeries {
    /// `db.system.name`: `redis`, `sqlite`, `postgresql`.
    system: &'static str,
    operation: &'static str,
    /// `error.type`; `None` for calls that succeeded.
    error: Option<&'static str>,
}

/// The registry. Cheap to share behind an `Arc`.
pub struct Metrics {
    /// Source-of-truth calls not attempted: its breaker was open.
    source_skipped: AtomicU64,
    db: Mutex<BTreeMap<DbSeries, Arc<Histogram>>>,
    /// Redis operations not attempted, by reason (`disconnected`, `circuit_open`).
    redis_skipped: Mutex<BTreeMap<&'static str, u64>>,
    /// Commands sent to Redis, by name as sent (`GET`, `SCRIPT LOAD`).
    redis_commands: Mutex<BTreeMap<&'static str, u64>>,
    /// From the last poll of Redis (`None` when it failed or was skipped).
    redis_info: Mutex<Option<RedisInfo>>,
    /// When a poll of Redis last succeeded (Unix seconds).
    redis_info_at: Mutex<Option<f64>>,
}

/// What the periodic poll of Redis found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisInfo {
    /// `used_memory`.
    pub memory_used_bytes: u64,
    /// `maxmemory` (0: no limit).
    pub memory_max_bytes: u64,
    /// Keys in the database, all prefixes (`INFO keyspace`).
    pub keyspace_keys: u64,
    /// Keys under the cache prefix, values and leases apart (`SCAN`).
    pub cached_keys: Option<u64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            source_skipped: AtomicU64::new(0),
            db: Mutex::default(),
            redis_skipped: Mutex::default(),
            redis_commands: Mutex::default(),
            redis_info: Mutex::default(),
            redis_info_at: Mutex::default(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    pub fn source_skipped(&self) {
        self.source_skipped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn db_operation(
        &self,
        system: &'static str,
        operation: &'static str,
        error: Option<&'static str>,
        took: Duration,
    ) {
        let series = DbSeries {
            system,
            operation,
            error,
        };
        let histogram = lock(&self.db)
            .entry(series)
            .or_insert_with(|| Arc::new(Histogram::new(&LATENCY_BUCKETS)))
            .clone();
        histogram.observe(took);
    }

    pub fn redis_skipped(&self, reason: &'static str) {
        *lock(&self.redis_skipped).entry(reason).or_default() += 1;
    }

    /// Counts commands sent to Redis: `(command, how many)`, the command in
    /// capitals as sent (`GET`, `SCRIPT LOAD`).
    pub fn redis_commands(&self, sent: &[(&'static str, u64)]) {
        let mut commands = lock(&self.redis_commands);
        for (command, n) in sent {
            *commands.entry(command).or_default() += n;
        }
    }

    /// The outcome of one poll of Redis: `None` when it failed, so that
    /// `/metrics` never shows a dead server's last numbers as current.
    pub fn set_redis_info(&self, info: Option<RedisInfo>) {
        if info.is_some() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            *lock(&self.redis_info_at) = Some(now.as_secs_f64());
        }
        *lock(&self.redis_info) = info;
    }

    pub fn redis_info(&self) -> Option<RedisInfo> {
        *lock(&self.redis_info)
    }

    /// The families this registry owns, appended to `out`.
    pub fn render_into(&self, out: &mut Exposition) {
        out.family(
            "db_client_operation_duration_seconds",
            "histogram",
            "Duration of source-of-truth queries and Redis commands, by system, operation and error type.",
        );
        for (series, histogram) in lock(&self.db).iter() {
            let mut labels = vec![
                ("db_system_name", series.system),
                ("db_operation_name", series.operation),
            ];
            if let Some(error) = series.error {
                labels.push(("error_type", error));
            }
            out.histogram("db_client_operation_duration_seconds", &labels, histogram);
        }
        out.counter(
            "redis_cache_source_operations_skipped_total",
            "Source-of-truth reads and writes not attempted: the database failed repeatedly moments ago (its circuit breaker is open).",
            self.source_skipped.load(Ordering::Relaxed),
        );
        out.family(
            "redis_cache_redis_operations_skipped_total",
            "counter",
            "Redis operations not attempted: no connection, or the circuit breaker open.",
        );
        for reason in ["disconnected", "circuit_open"] {
            let count = lock(&self.redis_skipped).get(reason).copied().unwrap_or(0);
            out.sample(
                "redis_cache_redis_operations_skipped_total",
                &[("reason", reason)],
                count as f64,
            );
        }
        out.family(
            "redis_cache_redis_commands_total",
            "counter",
            "Commands sent to Redis by cache operations, health checks and polls, named as INFO commandstats names them, in capitals (connection handshakes, the subscriber's connection and the permission check at start excluded).",
        );
        for (command, n) in lock(&self.redis_commands).iter() {
            let name = command.to_ascii_uppercase().replace(' ', "|");
            out.sample(
                "redis_cache_redis_commands_total",
                &[("command", &name)],
                *n as f64,
            );
        }
        if let Some(at) = *lock(&self.redis_info_at) {
            out.gauge(
                "redis_cache_redis_poll_success_timestamp_seconds",
                "When the last poll of Redis (INFO, SCAN) succeeded, in Unix seconds.",
                at,
            );
        }
        if let Some(info) = self.redis_info() {
            out.gauge(
                "redis_memory_used_bytes",
                "Memory Redis uses (INFO used_memory), polled periodically.",
                info.memory_used_bytes as f64,
            );
            out.gauge(
                "redis_memory_max_bytes",
                "Redis maxmemory (0: no limit), polled periodically.",
                info.memory_max_bytes as f64,
            );
            out.gauge(
                "redis_keyspace_keys",
                "Keys in the Redis database, all prefixes (INFO keyspace), polled periodically.",
                info.keyspace_keys as f64,
            );
            if let Some(keys) = info.cached_keys {
                out.gauge(
                    "redis_cache_keys",
                    "Cached values under the cache key prefix (SCAN), polled periodically.",
                    keys as f64,
                );
            }
        }
    }
}
