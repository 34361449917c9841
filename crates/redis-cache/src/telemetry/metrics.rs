//! Prometheus metrics of one instance, in the text exposition format
//! (`GET /metrics`).
//!
//! A small registry of our own rather than a process-wide recorder: every
//! label value comes from an enum, a fixed list or a matched route, so label
//! cardinality is bounded by construction; and each `Application` has its
//! own registry (the tests run several instances in one process). Names
//! follow Prometheus conventions and, where one exists, the OpenTelemetry
//! semantic conventions (`http.server.request.duration` becomes
//! `http_server_request_duration_seconds` with `http_request_method`,
//! `http_route`, `http_response_status_code`; `db.client.operation.duration`
//! covers the source of truth and Redis alike).
//!
//! Histograms use explicit buckets: from 100 µs for Redis and database calls
//! on a local network, up to 10 s for requests stuck behind a timeout.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use prometheus_text::{Exposition, Histogram};

/// Upper bounds of request and database-call latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The HTTP methods the API uses; anything else is reported as `_OTHER`, as
/// the semantic conventions ask.
const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct HttpSeries {
    method: &'static str,
    /// The matched route (`/items/{id}`), never the raw path; empty when no
    /// route matched.
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct DbSeries {
    /// `db.system.name`: `redis`, `sqlite`, `postgresql`.
    system: &'static str,
    operation: &'static str,
    /// `error.type`; `None` for calls that succeeded.
    error: Option<&'static str>,
}

/// Why the server closed a connection (see [`crate::http::server`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionClosed {
    /// A request's headers did not arrive in time.
    HeaderTimeout,
    /// Idle between requests for too long.
    IdleTimeout,
    /// Quiet the longest when the connection cap was reached.
    Evicted,
}

impl ConnectionClosed {
    const ALL: [ConnectionClosed; 3] = [
        ConnectionClosed::HeaderTimeout,
        ConnectionClosed::IdleTimeout,
        ConnectionClosed::Evicted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionClosed::HeaderTimeout => "header_timeout",
            ConnectionClosed::IdleTimeout => "idle_timeout",
            ConnectionClosed::Evicted => "evicted",
        }
    }
}

/// The registry. Cheap to share behind an `Arc`.
pub struct Metrics {
    http: Mutex<BTreeMap<HttpSeries, Arc<Histogram>>>,
    http_active: AtomicI64,
    http_connections: AtomicI64,
    /// Indexed like [`ConnectionClosed::ALL`].
    http_connections_closed: [AtomicU64; 3],
    http_connections_overloaded: AtomicU64,
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
            http: Mutex::default(),
            http_active: AtomicI64::new(0),
            http_connections: AtomicI64::new(0),
            http_connections_closed: Default::default(),
            http_connections_overloaded: AtomicU64::new(0),
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
    pub fn http_request(&self, method: &str, route: Option<&str>, status: u16, took: Duration) {
        let method = METHODS
            .iter()
            .find(|known| **known == method)
            .copied()
            .unwrap_or("_OTHER");
        let series = HttpSeries {
            method,
            route: route.unwrap_or_default().to_owned(),
            status,
        };
        let histogram = lock(&self.http)
            .entry(series)
            .or_insert_with(|| Arc::new(Histogram::new(&LATENCY_BUCKETS)))
            .clone();
        histogram.observe(took);
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn http_in_flight(self: &Arc<Self>) -> InFlight {
        self.http_active.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Counts an open connection until the guard is dropped.
    pub fn http_connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.http_connections.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.clone())
    }

    pub fn http_connection_closed(&self, reason: ConnectionClosed) {
        self.http_connections_closed[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A connection accepted while every other was busy (overload mode).
    pub fn http_connection_overloaded(&self) {
        self.http_connections_overloaded
            .fetch_add(1, Ordering::Relaxed);
    }

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
            "http_server_request_duration_seconds",
            "histogram",
            "Duration of HTTP server requests, by method, matched route and status code.",
        );
        for (series, histogram) in lock(&self.http).iter() {
            let status = series.status.to_string();
            let mut labels = vec![
                ("http_request_method", series.method),
                ("http_route", &series.route),
                ("http_response_status_code", &status),
                ("url_scheme", "http"),
            ];
            // As on the span: a server error's `error.type` is its status.
            if series.status >= 500 {
                labels.push(("error_type", &status));
            }
            out.histogram("http_server_request_duration_seconds", &labels, histogram);
        }
        out.family(
            "http_server_active_requests",
            "gauge",
            "HTTP requests being served.",
        );
        out.sample(
            "http_server_active_requests",
            &[],
            self.http_active.load(Ordering::Relaxed) as f64,
        );
        out.gauge(
            "redis_cache_http_open_connections",
            "HTTP connections open.",
            self.http_connections.load(Ordering::Relaxed) as f64,
        );
        out.family(
            "redis_cache_http_connections_closed_total",
            "counter",
            "HTTP connections closed by the server: headers too slow, idle too long, or quiet the longest when the connection cap was reached.",
        );
        for reason in ConnectionClosed::ALL {
            let count = self.http_connections_closed[reason as usize].load(Ordering::Relaxed);
            out.sample(
                "redis_cache_http_connections_closed_total",
                &[("reason", reason.as_str())],
                count as f64,
            );
        }
        out.counter(
            "redis_cache_http_overloaded_connections_total",
            "HTTP connections accepted while every other connection was busy: only the health endpoints are served on them, anything else gets 503.",
            self.http_connections_overloaded.load(Ordering::Relaxed),
        );
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

/// An open HTTP connection; see [`Metrics::http_connection_opened`].
pub struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.http_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An HTTP request in flight; see [`Metrics::http_in_flight`].
pub struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.http_active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets_sum_and_count() {
        let metrics = Metrics::default();
        metrics.http_request("GET", Some("/items/{id}"), 200, Duration::from_micros(300));
        metrics.http_request("GET", Some("/items/{id}"), 200, Duration::from_millis(30));
        metrics.http_request("BREW", None, 405, Duration::from_millis(1));
        metrics.http_request("GET", Some("/items/{id}"), 503, Duration::from_millis(1));
        let mut out = Exposition::default();
        metrics.render_into(&mut out);
        let text = out.finish();
        let series = r#"http_request_method="GET",http_route="/items/{id}",http_response_status_code="200",url_scheme="http""#;
        assert!(text.contains(&format!(
            "http_server_request_duration_seconds_bucket{{{series},le=\"0.00025\"}} 0"
        )));
        assert!(text.contains(&format!(
            "http_server_request_duration_seconds_bucket{{{series},le=\"0.0005\"}} 1"
        )));
        assert!(text.contains(&format!(
            "http_server_request_duration_seconds_bucket{{{series},le=\"+Inf\"}} 2"
        )));
        assert!(text.contains(&format!(
            "http_server_request_duration_seconds_count{{{series}}} 2"
        )));
        assert!(text.contains(
            r#"http_request_method="_OTHER",http_route="",http_response_status_code="405",url_scheme="http"}"#
        ));
        assert!(
            text.contains(r#"http_response_status_code="503",url_scheme="http",error_type="503"}"#)
        );
        assert!(text.contains("# TYPE http_server_request_duration_seconds histogram"));
    }
}
