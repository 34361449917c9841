//! `AdminAuth`: the bearer-token guard on routes that change cache state.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;

/// Extracting this succeeds when no `ADMIN_TOKEN` is configured, or when the
/// request carries `Authorization: Bearer <token>` with the right token.
pub struct AdminAuth;

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(expected) = &state.admin_token else {
            return Ok(AdminAuth);
        };
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        match presented {
            Some(token) if expected.constant_time_eq(token) => Ok(AdminAuth),
            _ => Err(ApiError::Unauthorized),
        }
    }
}
