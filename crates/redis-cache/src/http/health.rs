//! Health endpoints: `/health` for people and dashboards, `/livez` and
//! `/readyz` for orchestrators.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::openapi::{HealthBody, ProbeBody};
use crate::invalidation::SubscriberState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(livez))
        .routes(routes!(readyz))
}

#[utoipa::path(
    get, path = "/health", tag = "operations",
    summary = "Health of the instance and of what it depends on",
    responses(
        (status = 200, description = "healthy, or degraded (Redis or the subscription down, or Redis refusing a command the cache needs: answers come from the source of truth)", body = HealthBody),
        (status = 503, description = "unhealthy: the source of truth is unreachable", body = HealthBody),
    )
)]
/// `GET /health`: `healthy` when everything works, `degraded` (still 200) when
/// Redis or the subscription is down, or Redis refuses a command the cache
/// needs (`redis_refused`) — the service answers from the source of truth —
/// and `unhealthy` (503) only when the source of truth is unreachable.
async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let catalog = &state.catalog;
    let (database, redis) = tokio::join!(catalog.database_answers(), catalog.redis_answers());
    let subscriber = *state.subscriber.borrow();
    let engine = catalog.status();
    let refused = &engine.refused;
    let (code, status) = if !database {
        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
    } else if !redis
        || subscriber != SubscriberState::Subscribed
        || refused.iter().any(|r| r.essential)
    {
        (StatusCode::OK, "degraded")
    } else {
        (StatusCode::OK, "healthy")
    };
    let connected = |ok: bool| if ok { "connected" } else { "disconnected" };
    (
        code,
        Json(json!({
            "status": status,
            "redis": connected(redis),
            "redis_circuit": engine.redis_circuit.as_str(),
            "database": connected(database),
            "database_circuit": engine.database_circuit.as_str(),
            "subscriber": subscriber.as_str(),
            "redis_refused": refused
                .iter()
                .map(|r| (r.command.clone(), Value::from(r.reason.clone())))
                .collect::<serde_json::Map<_, _>>(),
            "l1": engine.near_cache.as_str(),
            "instance": catalog.instance(),
        })),
    )
}

#[utoipa::path(
    get, path = "/livez", tag = "operations",
    summary = "Liveness: the process serves HTTP",
    responses((status = 200, description = "Alive", body = ProbeBody))
)]
/// `GET /livez`: the process is up and serving HTTP.
async fn livez() -> Json<Value> {
    Json(json!({ "status": "alive" }))
}

#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    summary = "Readiness: the source of truth answers and the instance is not shutting down",
    responses(
        (status = 200, description = "Ready", body = ProbeBody),
        (status = 503, description = "Not ready, or shutting down", body = ProbeBody),
    )
)]
/// `GET /readyz`: ready for traffic when the source of truth is reachable and
/// the instance is not shutting down. Redis is not required.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.draining.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "shutting down" })),
        );
    }
    if state.catalog.database_answers().await {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "database": "disconnected" })),
        )
    }
}
