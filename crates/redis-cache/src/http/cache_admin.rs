//! `/cache/*`: manual invalidation and warming.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::AdminAuth;
use super::error::ApiError;
use super::json::ApiJson;
use super::openapi::{
    ErrorBody, InternalError, InvalidateResponse, PayloadTooLarge, Unauthorized,
    UnsupportedMediaType, WarmResponse,
};
use crate::cache::LinkState;

/// Most items one warm-up request may load.
const MAX_WARM: u32 = 100_000;
const DEFAULT_WARM: u32 = 1_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(invalidate))
        .routes(routes!(warm))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct InvalidateRequest {
    /// A key inside the cache prefix, such as `item:1`.
    key: Option<String>,
    /// A Redis glob inside the cache prefix, such as `item:1*`.
    pattern: Option<String>,
}

/// `POST /cache/invalidate`: deletes the key and/or the keys matching the
/// pattern in Redis before answering, then publishes the invalidation. Keys
/// and patterns must stay inside the cache prefix.
#[utoipa::path(
    post, path = "/cache/invalidate", tag = "cache",
    summary = "Invalidate a key and/or a pattern (Redis glob) inside the cache prefix",
    request_body = InvalidateRequest,
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "Deleted in Redis, then published", body = InvalidateResponse),
        (status = 202, description = "Redis unreachable: applied as soon as it answers", body = InvalidateResponse),
        (status = 400, description = "Neither key nor pattern, or outside the cache prefix", body = ErrorBody),
        (status = 401, response = Unauthorized),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
    )
)]
async fn invalidate(
    State(state): State<AppState>,
    _: AdminAuth,
    ApiJson(request): ApiJson<InvalidateRequest>,
) -> Result<Response, ApiError> {
    // The original sends "" for an absent field.
    let key = request.key.filter(|k| !k.is_empty());
    let pattern = request.pattern.filter(|p| !p.is_empty());
    if key.is_none() && pattern.is_none() {
        return Err(ApiError::bad_request("key or pattern required"));
    }
    let prefix = state.catalog.prefix();
    let key = key
        .map(|k| prefix.parse_key::<crate::domain::ItemId>(&k))
        .transpose()
        .map_err(|e| {
            ApiError::bad_request_with("invalid key", json!({ "reason": e.to_string() }))
        })?;
    let pattern = pattern
        .map(|p| prefix.parse_pattern(&p))
        .transpose()
        .map_err(|e| {
            ApiError::bad_request_with("invalid pattern", json!({ "reason": e.to_string() }))
        })?;
    let outcome = state.catalog.invalidate(key, pattern).await;
    if outcome.deferred {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({
                "message": "invalidation deferred until redis is reachable",
                "deleted": outcome.deleted,
            })),
        )
            .into_response());
    }
    Ok(
        Json(json!({ "message": "invalidation published", "deleted": outcome.deleted }))
            .into_response(),
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct WarmRequest {
    /// Most items to load (default 1000, at most 100000).
    limit: Option<u32>,
}

/// `POST /cache/warm`: loads up to `limit` of the most recently updated items
/// into Redis with pipelines, without replacing values already cached.
#[utoipa::path(
    post, path = "/cache/warm", tag = "cache",
    summary = "Load the most recently updated items into Redis",
    request_body = WarmRequest,
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "Warmed", body = WarmResponse),
        (status = 400, description = "limit too large", body = ErrorBody),
        (status = 401, response = Unauthorized),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = InternalError),
        (status = 503, description = "Redis or the source of truth unavailable", body = ErrorBody),
    )
)]
async fn warm(
    State(state): State<AppState>,
    _: AdminAuth,
    ApiJson(request): ApiJson<WarmRequest>,
) -> Result<Response, ApiError> {
    let limit = request.limit.unwrap_or(DEFAULT_WARM);
    if limit > MAX_WARM {
        return Err(ApiError::bad_request_with(
            "limit too large",
            json!({ "max": MAX_WARM }),
        ));
    }
    if state.catalog.status().redis != LinkState::Connected {
        return Err(ApiError::Unavailable {
            what: "redis",
            details: None,
            cause: None,
        });
    }
    let warmed = state.catalog.warm(limit).await?;
    let message = if warmed.complete {
        "cache warmed"
    } else {
        "cache warming incomplete: redis stopped answering"
    };
    Ok(Json(json!({
        "message": message,
        "read": warmed.read,
        "loaded": warmed.loaded,
        "complete": warmed.complete,
    }))
    .into_response())
}
