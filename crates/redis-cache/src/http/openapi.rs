//! The OpenAPI 3.1 document (`GET /openapi.json`) and interactive docs
//! (`GET /docs`). Each route documents itself next to its handler; this
//! module gathers them, and describes the bodies that handlers build as
//! plain JSON. The Swagger UI assets are compiled into the binary, so the
//! docs work with no internet access.

use axum::Router;
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

use super::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "redis-cache",
        description = "Item catalogue API that reads through Redis (with a near cache per instance), backed by SQLite or PostgreSQL. Every error is JSON: {\"error\": \"...\", \"details\": ...}.",
        license(name = "Apache-2.0"),
    ),
    paths(
        super::items::fetch,
        super::items::create,
        super::items::update,
        super::items::remove,
        super::items::batch,
        super::cache_admin::invalidate,
        super::cache_admin::warm,
        super::stats::stats,
        super::stats::reset,
        super::health::health,
        super::health::livez,
        super::health::readyz,
        super::metrics::metrics,
    ),
    components(schemas(ErrorBody, MessageBody, InvalidateResponse, WarmResponse, HealthBody, ProbeBody)),
    modifiers(&AdminToken),
    tags(
        (name = "items", description = "Items, read through the cache"),
        (name = "cache", description = "Cache administration (ADMIN_TOKEN, when set)"),
        (name = "operations", description = "Health, statistics and metrics"),
    )
)]
pub struct ApiDoc;

/// The bearer token of the admin routes, when `ADMIN_TOKEN` is set.
struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// `/openapi.json` and `/docs`.
pub fn router() -> Router<AppState> {
    let mut document = ApiDoc::openapi();
    // `PATCH /items/{id}` is `PUT` under another name.
    if let Some(path) = document.paths.paths.get_mut("/items/{id}") {
        path.patch = path.put.clone().map(|mut operation| {
            operation.operation_id = Some("update_patch".to_owned());
            operation
        });
    }
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", document))
}

/// Every error: a message, and details when there is more to say.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({ "error": "invalid item", "details": { "field": "price", "reason": "must be a finite number >= 0" } }))]
pub struct ErrorBody {
    error: String,
    /// Which field, which limit, which ids: depends on the error.
    #[schema(value_type = Option<Object>)]
    details: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct MessageBody {
    message: String,
}

#[derive(Serialize, ToSchema)]
pub struct InvalidateResponse {
    /// `invalidation published`, or that it was deferred.
    message: String,
    /// Cached values deleted in Redis before the answer.
    deleted: u64,
}

#[derive(Serialize, ToSchema)]
pub struct WarmResponse {
    message: String,
    /// Ids considered (the most recently updated).
    read: u64,
    /// Items written to Redis (the others were already cached).
    loaded: u64,
    /// False when Redis stopped answering part-way.
    complete: bool,
}

#[derive(Serialize, ToSchema)]
pub struct HealthBody {
    /// `healthy`, `degraded` or `unhealthy`.
    status: String,
    /// `connected` or `disconnected`.
    redis: String,
    /// `closed`, `open` or `half_open`.
    redis_circuit: String,
    /// `connected` or `disconnected`.
    database: String,
    /// `subscribed` or `disconnected`.
    subscriber: String,
    /// `active`, `bypassed` or `off`.
    l1: String,
    instance: String,
}

#[derive(Serialize, ToSchema)]
pub struct ProbeBody {
    /// `alive`, `ready`, `not ready` or `shutting down`.
    status: String,
    /// `disconnected` when that is why it is not ready.
    database: Option<String>,
}
