//! `ApiError`: every way a request can fail, each with its status. Bodies are
//! `{"error": "...", "details": ...}`; 5xx bodies never carry internal text,
//! the cause goes to the log (once, from the request-logging middleware).

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::catalog::LookupError;
use crate::domain::{ItemId, Version};
use crate::store::{StoreError, WriteError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or a field is invalid.
    #[error("{message}")]
    BadRequest {
        message: String,
        details: Option<Value>,
    },
    /// 401: an admin route was called without the right bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// 404: no such item, or no such route.
    #[error("{0}")]
    NotFound(&'static str),
    /// 405: the path exists, but not with this method (`Allow` lists those
    /// it has).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: an item with this id already exists.
    #[error("an item with this id already exists")]
    Conflict,
    /// 408: the request body did not arrive within the body timeout.
    #[error("request body not received in time")]
    RequestTimeout,
    /// 412: `If-Match` named a version that is not the current one.
    #[error("precondition failed: the item has changed")]
    PreconditionFailed { current: Option<Version> },
    /// 413: the body exceeds the 64 KiB limit.
    #[error("request body too large")]
    PayloadTooLarge { limit: usize },
    /// 415: the body is declared as something other than JSON.
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// 503: the source of truth (or, for cache operations, Redis) is unreachable.
    #[error("{what} unavailable")]
    Unavailable {
        what: &'static str,
        details: Option<Value>,
        #[source]
        cause: Option<anyhow::Error>,
    },
    /// 503: every connection was busy when this one was accepted; only the
    /// health endpoints are served on it.
    #[error("too many open connections")]
    Overloaded,
    /// 500: a bug or an unexpected failure; the cause is only logged.
    #[error("internal server error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request_with(message: impl Into<String>, details: Value) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            details: Some(details),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict => StatusCode::CONFLICT,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable { .. } | ApiError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn details(&self) -> Option<Value> {
        match self {
            ApiError::BadRequest { details, .. } => details.clone(),
            ApiError::PreconditionFailed { current: Some(v) } => {
                Some(json!({ "current_version": v.0 }))
            }
            ApiError::PayloadTooLarge { limit } => Some(json!({ "limit_bytes": limit })),
            ApiError::Unavailable { details, .. } => details.clone(),
            _ => None,
        }
    }
}

/// The headers every error response with `status` carries, with their
/// values. The OpenAPI document describes them from this same table.
pub fn headers_for(status: StatusCode) -> &'static [(HeaderName, &'static str)] {
    match status {
        StatusCode::UNAUTHORIZED => &[(header::WWW_AUTHENTICATE, "Bearer")],
        // The rest of the body may still be on its way: the connection
        // cannot carry another request.
        StatusCode::REQUEST_TIMEOUT => &[(header::CONNECTION, "close")],
        // The body was refused unread: the connection closes after the
        // answer, and says so, or a client would send its next request on
        // it.
        StatusCode::PAYLOAD_TOO_LARGE => &[(header::CONNECTION, "close")],
        StatusCode::SERVICE_UNAVAILABLE => &[(header::RETRY_AFTER, "1")],
        _ => &[],
    }
}

/// The internal cause of a 5xx, carried in the response extensions for the
/// logging middleware. Never serialised into the body.
#[derive(Clone, Debug)]
pub struct ErrorCause(pub Arc<String>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = json!({ "error": self.to_string() });
        if let Some(details) = self.details() {
            body["details"] = details;
        }
        let mut response = (status, Json(body)).into_response();
        for (name, value) in headers_for(status) {
            response
                .headers_mut()
                .insert(name.clone(), HeaderValue::from_static(value));
        }
        let cause = match self {
            ApiError::Unavailable {
                cause: Some(cause), ..
            }
            | ApiError::Internal(cause) => Some(format!("{cause:#}")),
            _ => None,
        };
        if let Some(cause) = cause {
            response
                .extensions_mut()
                .insert(ErrorCause(Arc::new(cause)));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            err if err.is_unavailable() => ApiError::Unavailable {
                what: "source of truth",
                details: None,
                cause: Some(err.into()),
            },
            StoreError::Rejected(_) => ApiError::bad_request("invalid item"),
            other => ApiError::Internal(other.into()),
        }
    }
}

/// Nothing cached and the source of truth failed: 503 when it is unreachable
/// (retrying helps), 500 otherwise.
impl From<LookupError<ItemId>> for ApiError {
    fn from(err: LookupError<ItemId>) -> Self {
        let cause = anyhow::anyhow!("{}", err.cause.cause);
        if err.cause.unavailable {
            ApiError::Unavailable {
                what: "source of truth",
                details: None,
                cause: Some(cause),
            }
        } else {
            ApiError::Internal(cause)
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(err: WriteError) -> Self {
        match err {
            WriteError::NotFound => ApiError::NotFound("item not found"),
            WriteError::AlreadyExists => ApiError::Conflict,
            WriteError::VersionMismatch { current } => ApiError::PreconditionFailed {
                current: Some(current),
            },
            WriteError::Store(store) => store.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn server_errors_hide_their_cause_but_keep_it_for_the_log() {
        let err = ApiError::Internal(anyhow::anyhow!("relation \"items\" does not exist"));
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let cause = response.extensions().get::<ErrorCause>().unwrap().clone();
        assert!(cause.0.contains("relation"));
        let body = body_of(response).await;
        assert_eq!(body, json!({ "error": "internal server error" }));
    }

    #[tokio::test]
    async fn not_found_has_the_original_body() {
        let body = body_of(ApiError::NotFound("item not found").into_response()).await;
        assert_eq!(body, json!({ "error": "item not found" }));
    }
}
