//! `/items`: item reads through the cache, writes that invalidate it.

use std::collections::HashSet;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use super::conditional::{etag, if_match, not_modified};
use super::error::ApiError;
use super::json::ApiJson;
use crate::domain::{Item, ItemFields, ItemId, ItemPatch, NewItem, ValidationError};

pub const X_CACHE_STATUS: HeaderName = HeaderName::from_static("x-cache-status");
pub const X_CACHE_TIER: HeaderName = HeaderName::from_static("x-cache-tier");
pub const X_CACHE_HITS: HeaderName = HeaderName::from_static("x-cache-hits");
pub const X_CACHE_MISSES: HeaderName = HeaderName::from_static("x-cache-misses");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/items", post(create))
        .route("/items/batch", post(batch))
        .route(
            "/items/{id}",
            get(fetch).put(update).patch(update).delete(remove),
        )
}

/// The `{id}` path segment, parsed into an [`ItemId`] or refused with a 400.
pub struct IdPath(pub ItemId);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::bad_request("invalid item id in path"))?;
        ItemId::parse(&raw).map(IdPath).map_err(|err| {
            ApiError::bad_request_with("invalid item id", json!({ "reason": err.to_string() }))
        })
    }
}

fn invalid_item(err: ValidationError) -> ApiError {
    ApiError::bad_request_with(
        "invalid item",
        json!({ "field": err.field, "reason": err.message }),
    )
}

/// `GET /items/{id}`: `X-Cache-Status` says where the answer came from;
/// `If-None-Match` with the current `ETag` gives 304.
async fn fetch(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let lookup = state.catalog.get(&id).await?;
    let mut cache_headers = HeaderMap::new();
    cache_headers.insert(
        X_CACHE_STATUS,
        HeaderValue::from_static(lookup.status.as_str()),
    );
    if let Some(tier) = lookup.tier {
        cache_headers.insert(X_CACHE_TIER, HeaderValue::from_static(tier.as_str()));
    }
    if let Some(age) = lookup.age {
        cache_headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
    }
    let Some(item) = lookup.item else {
        return Ok((cache_headers, ApiError::NotFound("item not found")).into_response());
    };
    let tag = [(header::ETAG, etag(item.version))];
    if not_modified(&headers, item.version) {
        return Ok((StatusCode::NOT_MODIFIED, cache_headers, tag).into_response());
    }
    Ok((cache_headers, tag, Json(item)).into_response())
}

/// `POST /items`: 201 with `Location`; an existing id is a 409.
async fn create(
    State(state): State<AppState>,
    ApiJson(fields): ApiJson<ItemFields>,
) -> Result<Response, ApiError> {
    let new = NewItem::parse(fields).map_err(invalid_item)?;
    let item = state.catalog.create(new).await?;
    let location = HeaderValue::from_str(&format!("/items/{}", item.id))
        .expect("item ids are valid header values");
    Ok((
        StatusCode::CREATED,
        [
            (header::LOCATION, location),
            (header::ETAG, etag(item.version)),
        ],
        Json(item),
    )
        .into_response())
}

/// `PUT` and `PATCH /items/{id}`: partial update; `If-Match` guards against
/// overwriting a newer version.
async fn update(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    headers: HeaderMap,
    ApiJson(fields): ApiJson<ItemFields>,
) -> Result<Response, ApiError> {
    let condition = if_match(&headers)?;
    let patch = ItemPatch::parse(&id, fields).map_err(invalid_item)?;
    let item: Item = state
        .catalog
        .update(&id, &patch, condition.version())
        .await
        .map_err(|e| condition.explain(e))?;
    Ok(([(header::ETAG, etag(item.version))], Json(item)).into_response())
}

/// `DELETE /items/{id}`: 204 with no body.
async fn remove(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let condition = if_match(&headers)?;
    state
        .catalog
        .delete(&id, condition.version())
        .await
        .map_err(|e| condition.explain(e))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct BatchRequest {
    ids: Option<Vec<String>>,
}

#[derive(Serialize)]
struct BatchResponse {
    items: Vec<Item>,
    missing: Vec<ItemId>,
}

/// `POST /items/batch`: found items in order of first occurrence, each once,
/// and the ids that do not exist.
async fn batch(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<BatchRequest>,
) -> Result<Response, ApiError> {
    let raw = request
        .ids
        .ok_or_else(|| ApiError::bad_request("ids is required (an array of item ids)"))?;
    if raw.len() > state.batch_max_ids {
        return Err(ApiError::bad_request_with(
            "too many ids",
            json!({ "max": state.batch_max_ids, "received": raw.len() }),
        ));
    }
    let mut seen = HashSet::with_capacity(raw.len());
    let mut ids = Vec::with_capacity(raw.len());
    for (index, candidate) in raw.iter().enumerate() {
        let id = ItemId::parse(candidate).map_err(|err| {
            ApiError::bad_request_with(
                "invalid item id",
                json!({ "index": index, "reason": err.to_string() }),
            )
        })?;
        if seen.insert(id.clone()) {
            ids.push(id);
        }
    }
    let found = state.catalog.get_many(&ids).await.map_err(|err| {
        let ids: Vec<String> = err.ids.iter().map(ToString::to_string).collect();
        match ApiError::from(err) {
            ApiError::Unavailable { what, cause, .. } => ApiError::Unavailable {
                what,
                details: Some(json!({ "unavailable_ids": ids })),
                cause,
            },
            other => other,
        }
    })?;
    let headers = [
        (
            X_CACHE_STATUS,
            HeaderValue::from_static(found.status.as_str()),
        ),
        (X_CACHE_HITS, HeaderValue::from(found.hits)),
        (X_CACHE_MISSES, HeaderValue::from(found.misses)),
    ];
    Ok((
        headers,
        Json(BatchResponse {
            items: found.items,
            missing: found.missing,
        }),
    )
        .into_response())
}
