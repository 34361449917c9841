//! `/stats`: this instance's cache counters.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::AdminAuth;
use super::openapi::{MessageBody, Unauthorized};
use crate::cache::{LinkState, StatsSnapshot};
use crate::invalidation::LagSnapshot;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stats))
        .routes(routes!(reset))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct StatsBody {
    #[serde(flatten)]
    counters: StatsSnapshot,
    /// Keys under the cache prefix (a `SCAN`, see the docs); null when Redis
    /// cannot be reached.
    total_keys: Option<u64>,
    instance: String,
    redis: &'static str,
    redis_circuit: &'static str,
    pending_invalidations: usize,
    redis_round_trips: u64,
    /// `active`, `bypassed` (invalidations may be lost) or `off`.
    l1: &'static str,
    l1_entries: u64,
    l1_flushes: u64,
    /// Publish-to-apply lag of invalidations received from other instances.
    invalidation_lag: LagSnapshot,
}

/// `GET /stats`: `hits + misses = lookups`; `hit_rate` is 0 without lookups.
#[utoipa::path(
    get, path = "/stats", tag = "operations",
    summary = "This instance's cache statistics since start or the last reset",
    responses((status = 200, description = "Counters and states", body = StatsBody))
)]
async fn stats(State(state): State<AppState>) -> Json<StatsBody> {
    let catalog = &state.catalog;
    let stats = catalog.stats();
    let total_keys = catalog.total_keys().await;
    let l1_entries = catalog.near_cache_entries().await;
    let status = catalog.status();
    Json(StatsBody {
        counters: stats.counters,
        total_keys,
        instance: catalog.instance().to_owned(),
        redis: match status.redis {
            LinkState::Connected => "connected",
            LinkState::Disconnected => "disconnected",
        },
        redis_circuit: status.redis_circuit.as_str(),
        pending_invalidations: status.deferred_invalidations,
        redis_round_trips: status.redis_round_trips,
        l1: status.near_cache.as_str(),
        l1_entries,
        l1_flushes: stats.l1_flushes,
        invalidation_lag: stats.invalidation_lag,
    })
}

/// `POST /stats/reset`: zeroes this instance's counters.
#[utoipa::path(
    post, path = "/stats/reset", tag = "operations",
    summary = "Start /stats from zero (Prometheus counters are not affected)",
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "Reset", body = MessageBody),
        (status = 401, response = Unauthorized),
    )
)]
async fn reset(State(state): State<AppState>, _: AdminAuth) -> Json<Value> {
    state.catalog.reset_stats();
    Json(json!({ "message": "stats reset" }))
}
