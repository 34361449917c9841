//! `X-Request-Id`: the caller's id when it is safe to echo, log and put on a
//! span; otherwise one we generate.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id accepted from a caller, in bytes. Generated ids (UUIDs) are 36.
pub const MAX_LEN: usize = 128;

/// A request id: 1 to [`MAX_LEN`] visible ASCII characters (`!` to `~`: no
/// spaces, no control characters, nothing outside ASCII).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    pub fn parse(value: &HeaderValue) -> Option<Self> {
        let bytes = value.as_bytes();
        let visible = bytes.iter().all(|b| (b'!'..=b'~').contains(b));
        (!bytes.is_empty() && bytes.len() <= MAX_LEN && visible).then(|| Self(value.clone()))
    }

    /// The caller's id: exactly one `X-Request-Id` header, and valid.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let mut values = headers.get_all(&X_REQUEST_ID).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => Self::parse(value),
            _ => None,
        }
    }

    pub fn generate() -> Self {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        Self(HeaderValue::from_str(&id).expect("a UUID is a valid header value"))
    }

    pub fn as_str(&self) -> &str {
        self.0
            .to_str()
            .expect("visible ASCII, checked when it was made")
    }
}

/// Outermost middleware: every request leaves here with exactly one valid
/// `X-Request-Id` (the caller's, or a new one replacing a missing or invalid
/// value), also in its extensions for the logger, and every response carries
/// the same id.
pub async fn assign(mut request: Request, next: Next) -> Response {
    let id = RequestId::from_headers(request.headers()).unwrap_or_else(RequestId::generate);
    request.headers_mut().insert(X_REQUEST_ID, id.0.clone());
    request.extensions_mut().insert(id.clone());
    let mut response = next.run(request).await;
    response.headers_mut().insert(X_REQUEST_ID, id.0);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Option<RequestId> {
        RequestId::parse(&HeaderValue::from_bytes(bytes).unwrap())
    }

    #[test]
    fn visible_ascii_up_to_the_limit_is_kept() {
        for ok in [
            "a".to_owned(),
            "717f8f60-9dfd-429f-8e87-918c1520e962".to_owned(),
            "req_1/2:3@host!~".to_owned(),
            "x".repeat(MAX_LEN),
        ] {
            assert_eq!(parse(ok.as_bytes()).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn empty_long_spaced_control_or_non_ascii_ids_are_refused() {
        let too_long = "x".repeat(MAX_LEN + 1);
        for bad in [
            &b""[..],
            too_long.as_bytes(),
            b"two words",
            b"tab\there",
            "caf\u{e9}".as_bytes(),
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn several_ids_are_refused() {
        let mut headers = HeaderMap::new();
        headers.append(X_REQUEST_ID, HeaderValue::from_static("a"));
        assert!(RequestId::from_headers(&headers).is_some());
        headers.append(X_REQUEST_ID, HeaderValue::from_static("b"));
        assert!(RequestId::from_headers(&headers).is_none());
    }

    #[test]
    fn generated_ids_are_valid() {
        let id = RequestId::generate();
        assert_eq!(RequestId::parse(&id.0), Some(id));
    }
}
