//! The HTTP API: routes, shared state and the middleware around every request.

mod auth;
mod cache_admin;
mod conditional;
mod error;
mod health;
mod items;
mod json;
mod metrics;
mod openapi;
mod request_id;
pub mod server;
mod stats;
mod trace;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::invalidation::SubscriberState;
use crate::items::ItemCatalog;
use crate::secret::Secret;
use crate::telemetry::http_metrics::HttpMetrics;
pub use error::{ApiError, ErrorCause};
pub use items::{X_CACHE_HITS, X_CACHE_MISSES, X_CACHE_STATUS};
pub use json::BODY_LIMIT;

/// Everything a handler needs; every field is a cheap handle.
#[derive(Clone)]
pub struct AppState {
    pub catalog: ItemCatalog,
    /// The HTTP server's metrics (the catalog keeps its own).
    pub metrics: Arc<HttpMetrics>,
    /// Written by the invalidation subscriber task, read by `/health`.
    pub subscriber: watch::Receiver<SubscriberState>,
    pub admin_token: Option<Secret>,
    pub batch_max_ids: usize,
    /// Cancelled when shutdown begins, so `/readyz` turns away new traffic
    /// while in-flight requests finish.
    pub draining: CancellationToken,
}

/// Every route, each registered from its OpenAPI description: the document
/// and the router come from this one list, so neither can have a route the
/// other lacks. Register routes with `routes!` only.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(items::router())
        .merge(cache_admin::router())
        .merge(stats::router())
        .merge(health::router())
        .merge(metrics::router())
        .merge(openapi::router())
}

pub fn router(state: AppState) -> Router {
    let (routes, document) = api_routes().split_for_parts();
    routes
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(openapi::Document::new(document)))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Inside the logger, so a panic is logged with its request like any 500.
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal(anyhow::anyhow!("request handler panicked")).into_response()
        }))
        .layer(middleware::from_fn_with_state(state.clone(), log_request))
        // Outermost, so every response carries the id, panics and 405s included.
        .layer(middleware::from_fn(request_id::assign))
        .with_state(state)
}

/// Why a request is answered before its handler runs, if it is: on a
/// connection accepted in overload mode anything but a probe (503); a body
/// declared larger than the limit (413), before anything of it is read (so
/// a client that sent `Expect: 100-continue` gets no `100 Continue`).
fn refused_early(request: &Request, route: Option<&str>) -> Option<ApiError> {
    if request.extensions().get::<server::Overloaded>().is_some() && !route.is_some_and(is_probe) {
        return Some(ApiError::Overloaded);
    }
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    declared
        .is_some_and(|length| length > BODY_LIMIT as u64)
        .then_some(ApiError::PayloadTooLarge { limit: BODY_LIMIT })
}

/// Routes for orchestrators and monitoring, served even in overload mode
/// and logged at debug.
fn is_probe(route: &str) -> bool {
    matches!(route, "/livez" | "/readyz" | "/health" | "/metrics")
}

async fn unknown_route() -> ApiError {
    ApiError::NotFound("route not found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Around every request: its server span (continuing the caller's trace
/// when it sends `traceparent`), its metrics, and one log line, with the
/// hidden cause of every 5xx: the only place errors are logged. Requests
/// refused before their handler ([`refused_early`]) are answered here.
async fn log_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let _in_flight = state.metrics.http_in_flight();
    let method = request.method().clone();
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let route = matched.clone().unwrap_or_else(|| "<unmatched>".to_owned());
    let request_id = request
        .extensions()
        .get::<request_id::RequestId>()
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default();
    let span = trace::http_server(
        &method,
        matched.as_deref(),
        request.uri().path(),
        &request_id,
    );
    let _ = span.set_parent(trace::incoming_context(request.headers()));
    let trace_id = trace::trace_id(&span);
    let response = match refused_early(&request, matched.as_deref()) {
        Some(refusal) => refusal.into_response(),
        None => next.run(request).instrument(span.clone()).await,
    };
    let status = response.status().as_u16();
    trace::http_status(&span, status);
    state.metrics.http_request(
        method.as_str(),
        matched.as_deref(),
        status,
        started.elapsed(),
    );
    let latency_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
    let cache = response
        .headers()
        .get(&X_CACHE_STATUS)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    if let Some(ErrorCause(cause)) = response.extensions().get::<ErrorCause>() {
        tracing::error!(%method, %route, status, %request_id, %trace_id, error = %cause, "request failed");
    }
    // Probes arrive every few seconds from orchestrators; keep them out of the
    // default log level.
    if is_probe(&route) && status < 500 {
        tracing::debug!(%method, %route, status, latency_ms, %request_id, %trace_id, "request");
    } else {
        tracing::info!(%method, %route, status, latency_ms, cache, %request_id, %trace_id, "request");
    }
    response
}
