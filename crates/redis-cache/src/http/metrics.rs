//! `GET /metrics`: this instance's metrics in the Prometheus text format:
//! the HTTP server's ([`crate::telemetry::http_metrics`]), then the
//! catalog's (its counters and states, read at scrape time, and its timed
//! series), then this build's version.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::invalidation::SubscriberState;
use crate::telemetry::metrics::Exposition;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    summary = "Prometheus metrics (text exposition format 0.0.4)",
    responses((status = 200, description = "Metrics", content_type = "text/plain; version=0.0.4", body = String))
)]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = Exposition::default();
    state.metrics.render_into(&mut out);
    let subscribed = *state.subscriber.borrow() == SubscriberState::Subscribed;
    state.catalog.render_metrics(&mut out, subscribed).await;
    out.family("redis_cache_build_info", "gauge", "Version of this build.");
    out.sample(
        "redis_cache_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], out.finish())
}
