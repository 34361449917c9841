//! The OpenAPI 3.1 document (`GET /openapi.json`) and interactive docs
//! (`GET /docs`). Each route documents itself next to its handler and is
//! registered from that same description (`routes!`), so the document lists
//! exactly the routes served. This module adds what the middleware does to
//! every request (request id, trace context, 405) and the headers that
//! errors carry, and describes the bodies that handlers build as plain JSON.
//! The Swagger UI assets are compiled into the binary, so the docs work with
//! no internet access.

use std::sync::{Arc, LazyLock};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Serialize;
use serde_json::json;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{self as oa, Ref, RefOr};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::Config;

use super::AppState;
use super::error::{self, ApiError};
use super::request_id;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "redis-cache",
        description = "Item catalogue API that reads through Redis (with a near cache per instance), backed by SQLite or PostgreSQL. Every error is JSON: {\"error\": \"...\", \"details\": ...}. Every request may carry X-Request-Id and traceparent, and every response carries X-Request-Id. Every GET also answers HEAD. Any unexpected failure, even in a route that documents no 500, is answered 500 with an opaque body. Any route may also answer 408 (a body not received within HTTP_BODY_TIMEOUT, with Connection: close) or, on a connection accepted while every other connection is busy, 503 {\"error\": \"too many open connections\"} with Retry-After (the health endpoints and /metrics are still served).",
        license(name = "Apache-2.0"),
    ),
    components(
        schemas(ErrorBody, MessageBody, InvalidateResponse, WarmResponse, HealthBody, ProbeBody),
        responses(Unauthorized, PayloadTooLarge, UnsupportedMediaType, InternalError),
    ),
    modifiers(&AdminToken),
    tags(
        (name = "items", description = "Items, read through the cache"),
        (name = "cache", description = "Cache administration (ADMIN_TOKEN, when set)"),
        (name = "operations", description = "Health, statistics and metrics"),
        (name = "docs", description = "This document and its interactive viewer"),
    )
)]
pub struct ApiDoc;

/// The bearer token of the admin routes, when `ADMIN_TOKEN` is set.
struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, openapi: &mut oa::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// `/openapi.json` and `/docs`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(document))
        .routes(routes!(docs))
        .routes(routes!(docs_page))
        .routes(routes!(docs_file))
}

/// The finished document, served by `GET /openapi.json`.
#[derive(Clone)]
pub struct Document(Bytes);

impl Document {
    /// Completes what the handlers documented (see [`complete`]) and renders it once.
    pub fn new(document: oa::OpenApi) -> Self {
        let document = complete(document);
        Self(Bytes::from(
            serde_json::to_vec(&document).expect("the document serialises"),
        ))
    }
}

/// Adds to every operation what the middleware around every handler does:
/// the `X-Request-Id` and `traceparent` request headers, the `X-Request-Id`
/// response header, and the 405 of the method-not-allowed fallback; adds to
/// every error response the headers [`ApiError`] sets for its status; gives
/// an operation registered under several methods one id per method.
fn complete(mut document: oa::OpenApi) -> oa::OpenApi {
    let components = document.components.get_or_insert_with(Default::default);
    components.parameters.insert(
        "X-Request-Id".into(),
        RefOr::T(from_json(json!({
            "name": "X-Request-Id",
            "in": "header",
            "required": false,
            "description": format!(
                "An id for this request, echoed in the response and written to its log line and span: 1 to {} visible ASCII characters (no spaces or control characters), sent once. Anything else is replaced by a generated UUID.",
                request_id::MAX_LEN,
            ),
            "schema": {
                "type": "string",
                "minLength": 1,
                "maxLength": request_id::MAX_LEN,
                "pattern": "^[!-~]+$",
            },
        }))),
    );
    components.parameters.insert(
        "traceparent".into(),
        RefOr::T(from_json(json!({
            "name": "traceparent",
            "in": "header",
            "required": false,
            "description": "W3C trace context: the server span continues the caller's trace. A malformed value is ignored and a new trace starts.",
            "schema": {
                "type": "string",
                "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
            },
            "example": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        }))),
    );
    for (name, description, schema_type) in HEADERS {
        components.headers.insert(
            name.into(),
            RefOr::T(from_json(json!({
                "description": description,
                "schema": { "type": schema_type },
            }))),
        );
    }
    let mut method_not_allowed = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "The path exists, but not with this method.",
    );
    let (name, allow) = header_ref("allow");
    method_not_allowed.headers.insert(name.into(), allow);
    components
        .responses
        .insert("MethodNotAllowed".into(), RefOr::T(method_not_allowed));

    let mut operation_ids = std::collections::HashSet::new();
    for item in document.paths.paths.values_mut() {
        for (method, operation) in operations(item) {
            if let Some(id) = &mut operation.operation_id
                && !operation_ids.insert(id.clone())
            {
                *id = format!("{id}_{method}");
            }
            let parameters = operation.parameters.get_or_insert_with(Vec::new);
            for name in ["X-Request-Id", "traceparent"] {
                parameters.push(RefOr::Ref(Ref::new(format!(
                    "#/components/parameters/{name}"
                ))));
            }
            let responses = &mut operation.responses.responses;
            responses.insert(
                StatusCode::METHOD_NOT_ALLOWED.as_str().into(),
                RefOr::Ref(Ref::from_response_name("MethodNotAllowed")),
            );
            for (status, response) in responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                let (name, request_id) = header_ref(request_id::X_REQUEST_ID.as_str());
                response.headers.insert(name.into(), request_id);
                if let Ok(status) = status.parse::<StatusCode>()
                    && is_error_body(response)
                {
                    add_error_headers(response, status);
                }
            }
        }
    }
    document
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|op| (method, op)))
}

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("a well-formed OpenAPI object")
}

/// Response headers, each described once in `components.headers`: name,
/// description, JSON type.
const HEADERS: [(&str, &str, &str); 5] = [
    (
        "X-Request-Id",
        "This request's id: the caller's X-Request-Id when it is valid, else a generated UUID.",
        "string",
    ),
    ("Retry-After", "Seconds to wait before retrying.", "integer"),
    (
        "WWW-Authenticate",
        "The scheme to authenticate with: Bearer.",
        "string",
    ),
    ("Allow", "The methods this path has.", "string"),
    (
        "Connection",
        "close: the connection closes after this response (a body refused unread).",
        "string",
    ),
];

/// The documented name of a header in [`HEADERS`] (any case), and a
/// reference to its description.
fn header_ref(name: &str) -> (&'static str, RefOr<oa::header::Header>) {
    let (documented, ..) = HEADERS
        .iter()
        .find(|(documented, ..)| documented.eq_ignore_ascii_case(name))
        .unwrap_or_else(|| panic!("header {name} is not described"));
    let reference = Ref::new(format!("#/components/headers/{documented}"));
    (documented, RefOr::Ref(reference))
}

/// Whether the response is one [`ApiError`] makes.
fn is_error_body(response: &oa::Response) -> bool {
    response.content.values().any(|content| {
        matches!(content, RefOr::T(oa::Content { schema: Some(RefOr::Ref(r)), .. })
            if r.ref_location == "#/components/schemas/ErrorBody")
    })
}

fn add_error_headers(response: &mut oa::Response, status: StatusCode) {
    for (name, _) in error::headers_for(status) {
        let (name, reference) = header_ref(name.as_str());
        response.headers.insert(name.into(), reference);
    }
}

/// A response with [`ErrorBody`], the headers [`ApiError`] sets for its
/// status, and the request id.
fn error_response(status: StatusCode, description: &str) -> oa::Response {
    let mut response: oa::Response = from_json(json!({
        "description": description,
        "content": {
            "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } },
        },
    }));
    add_error_headers(&mut response, status);
    let (name, request_id) = header_ref(request_id::X_REQUEST_ID.as_str());
    response.headers.insert(name.into(), request_id);
    response
}

/// Reusable error responses, referred to by the routes that can give them.
macro_rules! error_responses {
    ($($name:ident: $status:ident, $description:literal;)+) => {
        $(
            pub struct $name;

            impl<'r> ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<oa::Response>) {
                    let response = error_response(StatusCode::$status, $description);
                    (stringify!($name), RefOr::T(response))
                }
            }
        )+
    };
}

error_responses! {
    Unauthorized: UNAUTHORIZED,
        "ADMIN_TOKEN is set and the bearer token is missing or wrong.";
    PayloadTooLarge: PAYLOAD_TOO_LARGE,
        "The body is over 64 KiB (details.limit_bytes).";
    UnsupportedMediaType: UNSUPPORTED_MEDIA_TYPE,
        "The body is declared as something other than JSON (application/json or application/*+json; a body without Content-Type is read as JSON).";
    InternalError: INTERNAL_SERVER_ERROR,
        "An unexpected failure, such as a source-of-truth query that failed for another reason than an outage. The body never says what; the cause is logged with the request id.";
}

/// `GET /openapi.json`.
#[utoipa::path(
    get, path = "/openapi.json", tag = "docs",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
async fn document(Extension(Document(bytes)): Extension<Document>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response()
}

/// `GET /docs`: the page's assets are named relative to `/docs/`.
#[utoipa::path(
    get, path = "/docs", tag = "docs",
    summary = "Interactive documentation (Swagger UI)",
    responses((status = 303, description = "See /docs/", headers(("Location" = String, description = "/docs/"))))
)]
async fn docs() -> Redirect {
    Redirect::to("/docs/")
}

/// `GET /docs/`: Swagger UI on this document.
#[utoipa::path(
    get, path = "/docs/", tag = "docs",
    summary = "Interactive documentation (Swagger UI)",
    responses(
        (status = 200, description = "The Swagger UI page", content_type = "text/html", body = String),
        (status = 500, response = InternalError),
    )
)]
async fn docs_page() -> Result<Response, ApiError> {
    swagger_file("index.html")
}

/// `GET /docs/{file}`: the page's scripts, style sheets and icons.
#[utoipa::path(
    get, path = "/docs/{file}", tag = "docs",
    summary = "An asset of the interactive documentation",
    params(("file" = String, Path, description = "A file of the page, such as swagger-ui.css")),
    responses(
        (status = 200, description = "The file", content(
            ("text/javascript"), ("text/css"), ("text/html"), ("image/png"),
        )),
        (status = 404, description = "No such file", body = ErrorBody),
        (status = 500, response = InternalError),
    )
)]
async fn docs_file(file: Result<Path<String>, PathRejection>) -> Result<Response, ApiError> {
    // Not UTF-8 once decoded: no file has such a name.
    let Ok(Path(file)) = file else {
        return Err(ApiError::NotFound("no such file"));
    };
    swagger_file(&file)
}

/// Where Swagger UI finds the document.
static SWAGGER: LazyLock<Arc<Config<'static>>> =
    LazyLock::new(|| Arc::new(Config::from("/openapi.json")));

fn swagger_file(name: &str) -> Result<Response, ApiError> {
    let file = utoipa_swagger_ui::serve(name, SWAGGER.clone())
        .map_err(|err| ApiError::Internal(anyhow::anyhow!("swagger ui file {name}: {err}")))?
        .ok_or(ApiError::NotFound("no such file"))?;
    let content_type = HeaderValue::from_str(&file.content_type)
        .map_err(|err| ApiError::Internal(anyhow::anyhow!("content type of {name}: {err}")))?;
    let mut response = (
        [(header::CONTENT_TYPE, content_type)],
        file.bytes.into_owned(),
    )
        .into_response();
    if file.gzpipped {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(response)
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
    /// `closed`, `open` (reads and writes fail at once after repeated
    /// failures to reach the database) or `half_open`; always `closed` with
    /// SQLite.
    database_circuit: String,
    /// `subscribed` or `disconnected`.
    subscriber: String,
    /// Commands Redis refuses for good (the ACL user lacks them, or they are
    /// disabled), by name (`set`, `script|load`), with Redis' words. Any but
    /// `info` makes the instance degraded.
    redis_refused: std::collections::BTreeMap<String, String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The document as the router builds it.
    fn document() -> serde_json::Value {
        let (_, document) = super::super::api_routes().split_for_parts();
        serde_json::to_value(complete(document)).unwrap()
    }

    #[test]
    fn every_reference_resolves() {
        let document = document();
        let text = document.to_string();
        for reference in text.split("\"$ref\":\"").skip(1) {
            let target = reference.split('"').next().unwrap();
            let pointer = target.strip_prefix('#').expect("local references only");
            assert!(
                document.pointer(pointer).is_some(),
                "{target} does not resolve"
            );
        }
    }

    #[test]
    fn operation_ids_are_unique() {
        let document = document();
        let mut ids: Vec<&str> = document["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|operation| operation["operationId"].as_str())
            .collect();
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count, "{ids:?}");
    }
}
