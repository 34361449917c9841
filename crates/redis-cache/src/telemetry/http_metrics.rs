//! The HTTP server's metrics (`GET /metrics`): requests by method, matched
//! route and status, requests in flight, and connections (open, closed by
//! the server and why, accepted in overload). Names follow the
//! OpenTelemetry semantic conventions (`http.server.request.duration`
//! becomes `http_server_request_duration_seconds` with
//! `http_request_method`, `http_route`, `http_response_status_code`). The
//! cache engine's own series are [`super::metrics`]'s.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::metrics::LATENCY_BUCKETS;
use prometheus_text::{Exposition, Histogram};

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
#[derive(Default)]
pub struct HttpMetrics {
    http: Mutex<BTreeMap<HttpSeries, Arc<Histogram>>>,
    http_active: AtomicI64,
    http_connections: AtomicI64,
    /// Indexed like [`ConnectionClosed::ALL`].
    http_connections_closed: [AtomicU64; 3],
    http_connections_overloaded: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl HttpMetrics {
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
    }
}

/// An open HTTP connection; see [`HttpMetrics::http_connection_opened`].
pub struct OpenConnection(Arc<HttpMetrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.http_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An HTTP request in flight; see [`HttpMetrics::http_in_flight`].
pub struct InFlight(Arc<HttpMetrics>);

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
        let metrics = HttpMetrics::default();
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
