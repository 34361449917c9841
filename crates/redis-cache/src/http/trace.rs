//! The server span of a request: W3C trace context on the way in (the
//! caller's `traceparent` becomes the parent of our server span, and the
//! trace id goes into the log line), and the span's OpenTelemetry fields.

use axum::http::{HeaderMap, Method};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::telemetry::spans::failed;

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// The caller's trace context, if its headers carry one (a malformed
/// `traceparent` is ignored, and a new trace starts).
pub fn incoming_context(headers: &HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&Headers(headers))
    })
}

/// The span's trace id in hex, or empty when there is none.
pub fn trace_id(span: &tracing::Span) -> String {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span_context.trace_id().to_string()
    } else {
        String::new()
    }
}

/// One HTTP request, named `METHOD route` (the method alone when no route
/// matched). Its status is recorded with [`http_status`].
pub fn http_server(method: &Method, route: Option<&str>, path: &str, request_id: &str) -> Span {
    tracing::info_span!(
        "HTTP request",
        otel.name = %match route {
            Some(route) => format!("{method} {route}"),
            None => method.to_string(),
        },
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = route,
        url.path = path,
        url.scheme = "http",
        http.response.status_code = Empty,
        error.type = Empty,
        request_id = %request_id,
    )
}

/// The answer's status; a server error (5xx) fails the span, its
/// `error.type` being the status code, as the conventions have it.
pub fn http_status(span: &Span, status: u16) {
    span.record("http.response.status_code", status);
    if status >= 500 {
        failed(span, &status.to_string());
    }
}
