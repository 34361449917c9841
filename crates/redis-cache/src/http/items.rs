//! `/items`: item reads through the cache, writes that invalidate it.

use std::collections::HashSet;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::conditional::{etag, if_match, not_modified};
use super::error::ApiError;
use super::json::ApiJson;
use super::openapi::{ErrorBody, InternalError, PayloadTooLarge, UnsupportedMediaType};
use crate::domain::{Item, ItemFields, ItemId, ItemPatch, NewItem, ValidationError};
use crate::items::ItemWrites as _;

pub const X_CACHE_STATUS: HeaderName = HeaderName::from_static("x-cache-status");
pub const X_CACHE_TIER: HeaderName = HeaderName::from_static("x-cache-tier");
pub const X_CACHE_HITS: HeaderName = HeaderName::from_static("x-cache-hits");
pub const X_CACHE_MISSES: HeaderName = HeaderName::from_static("x-cache-misses");

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(batch))
        .routes(routes!(fetch, update, remove))
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
#[utoipa::path(
    get, path = "/items/{id}", tag = "items",
    summary = "Read an item through the cache",
    params(
        ("id" = String, Path, description = "1 to 64 characters of [A-Za-z0-9._-]"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag (\"<version>\"): 304 when it is current"),
    ),
    responses(
        (status = 200, description = "The item", body = Item, headers(
                ("ETag" = String, description = "\"<version>\""),
                ("X-Cache-Status" = String, description = "HIT, MISS, BYPASS (Redis could not be used) or STALE (served past its freshness: the source of truth failed)"),
                ("X-Cache-Tier" = Option<String>, description = "On hits: L1 (this instance's near cache) or L2 (Redis)"),
                ("Age" = Option<u64>, description = "Seconds since the value was read from the source of truth (STALE answers)"),
        )),
        (status = 304, description = "Not modified", headers(
                ("ETag" = String),
                ("X-Cache-Status" = String),
                ("X-Cache-Tier" = Option<String>),
                ("Age" = Option<u64>),
        )),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 404, description = "No such item (absences are cached too)", body = ErrorBody, headers(
                ("X-Cache-Status" = String, description = "HIT, MISS, BYPASS (Redis could not be used) or STALE (served past its freshness: the source of truth failed)"),
                ("X-Cache-Tier" = Option<String>, description = "On hits: L1 (this instance's near cache) or L2 (Redis)"),
                ("Age" = Option<u64>, description = "Seconds since the absence was read from the source of truth (STALE answers)"),
        )),
        (status = 500, response = InternalError),
        (status = 503, description = "Source of truth unavailable and nothing usable cached", body = ErrorBody),
    )
)]
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
    let Some(item) = lookup.value else {
        return Ok((cache_headers, ApiError::NotFound("item not found")).into_response());
    };
    let tag = [(header::ETAG, etag(item.version))];
    if not_modified(&headers, item.version) {
        return Ok((StatusCode::NOT_MODIFIED, cache_headers, tag).into_response());
    }
    Ok((cache_headers, tag, Json(item)).into_response())
}

/// `POST /items`: 201 with `Location`; an existing id is a 409.
#[utoipa::path(
    post, path = "/items", tag = "items",
    summary = "Create an item",
    request_body(content = ItemFields, description = "name is required; id is generated when absent; timestamps and version are ignored"),
    responses(
        (status = 201, description = "Created", body = Item, headers(("Location" = String), ("ETag" = String))),
        (status = 400, description = "Invalid item", body = ErrorBody),
        (status = 409, description = "An item with this id already exists", body = ErrorBody),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = InternalError),
        (status = 503, description = "Source of truth unavailable", body = ErrorBody),
    )
)]
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
#[utoipa::path(
    method(put, patch), path = "/items/{id}", tag = "items",
    summary = "Update an item (partial: omitted fields keep their values; PATCH is the same)",
    params(
        ("id" = String, Path),
        ("If-Match" = Option<String>, Header, description = "\"<version>\": 412 unless it is the current version"),
    ),
    request_body = ItemFields,
    responses(
        (status = 200, description = "Updated; version + 1", body = Item, headers(("ETag" = String))),
        (status = 400, description = "Invalid id or fields, or If-Match with several entity tags", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
        (status = 412, description = "If-Match names another version", body = ErrorBody),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = InternalError),
        (status = 503, description = "Source of truth unavailable", body = ErrorBody),
    )
)]
async fn update(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    headers: HeaderMap,
    ApiJson(fields): ApiJson<ItemFields>,
) -> Result<Response, ApiError> {
    // The body first: a request that could never succeed is a 400 whatever
    // its precondition.
    let patch = ItemPatch::parse(&id, fields).map_err(invalid_item)?;
    let condition = if_match(&headers)?;
    let item: Item = state
        .catalog
        .update(&id, &patch, condition.version())
        .await
        .map_err(|e| condition.explain(e))?;
    Ok(([(header::ETAG, etag(item.version))], Json(item)).into_response())
}

/// `DELETE /items/{id}`: 204 with no body.
#[utoipa::path(
    delete, path = "/items/{id}", tag = "items",
    summary = "Delete an item",
    params(("id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid id, or If-Match with several entity tags", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
        (status = 412, description = "If-Match names another version", body = ErrorBody),
        (status = 500, response = InternalError),
        (status = 503, description = "Source of truth unavailable", body = ErrorBody),
    )
)]
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

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct BatchRequest {
    /// Item ids (at most `BATCH_MAX_IDS`, 1000 by default); duplicates are
    /// answered once.
    #[schema(required)]
    ids: Option<Vec<String>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct BatchResponse {
    /// Found items, in the order of first occurrence.
    items: Vec<Item>,
    /// Ids with no item.
    #[schema(value_type = Vec<String>)]
    missing: Vec<ItemId>,
}

/// `POST /items/batch`: found items in order of first occurrence, each once,
/// and the ids that do not exist.
#[utoipa::path(
    post, path = "/items/batch", tag = "items",
    summary = "Read many items: one Redis round trip for all, one query for the misses",
    request_body = BatchRequest,
    responses(
        (status = 200, description = "Found items and missing ids", body = BatchResponse, headers(
                ("X-Cache-Status" = String, description = "HIT when every id hit, BYPASS or STALE if any was, else MISS"),
                ("X-Cache-Hits" = u64, description = "Distinct ids answered by a cache"),
                ("X-Cache-Misses" = u64, description = "Distinct ids that were not"),
        )),
        (status = 400, description = "ids missing, not an array, too many, or one invalid", body = ErrorBody),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = InternalError),
        (status = 503, description = "Some ids could be answered neither by a cache nor by the source of truth (details.unavailable_ids)", body = ErrorBody),
    )
)]
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
            items: found.values,
            missing: found.missing,
        }),
    )
        .into_response())
}
