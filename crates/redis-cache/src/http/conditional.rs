//! Entity tags and conditional requests. An item's tag is its version in
//! quotes (`"3"`): strong, and it changes on every update.

use axum::http::{HeaderMap, HeaderValue, header};

use super::error::ApiError;
use crate::domain::Version;
use crate::store::WriteError;

pub fn etag(version: Version) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("digits and quotes are valid")
}

/// `If-None-Match`: true when the client's copy is current, i.e. the answer
/// may be `304 Not Modified`. Uses weak comparison, as RFC 9110 prescribes.
pub fn not_modified(headers: &HeaderMap, version: Version) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || parse_tag(tag.trim_start_matches("W/")) == Some(version))
}

/// What `If-Match` asks of the stored item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMatch {
    /// No header: write unconditionally.
    Absent,
    /// `*`: the item must exist.
    Exists,
    /// The item must still be at this version.
    Version(Version),
}

impl IfMatch {
    pub fn version(self) -> Option<Version> {
        match self {
            IfMatch::Version(v) => Some(v),
            _ => None,
        }
    }

    /// The error for a write that failed: with any `If-Match`, a missing item
    /// is a failed precondition (RFC 9110), not a 404.
    pub fn explain(self, err: WriteError) -> ApiError {
        match err {
            WriteError::NotFound if self != IfMatch::Absent => {
                ApiError::PreconditionFailed { current: None }
            }
            other => other.into(),
        }
    }
}

/// Parses `If-Match`. Only one entity tag (or `*`) is supported.
pub fn if_match(headers: &HeaderMap) -> Result<IfMatch, ApiError> {
    let mut tags = headers
        .get_all(header::IF_MATCH)
        .iter()
        .map(|v| v.to_str().map_err(|_| malformed()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .peekable();
    if tags.peek().is_none() {
        return Ok(IfMatch::Absent);
    }
    let tags: Vec<&str> = tags.collect();
    if tags.contains(&"*") {
        return Ok(IfMatch::Exists);
    }
    // Strong comparison: weak or foreign tags can never match.
    let versions: Vec<Version> = tags.iter().filter_map(|t| parse_tag(t)).collect();
    match versions.as_slice() {
        [] => Err(ApiError::PreconditionFailed { current: None }),
        [one] => Ok(IfMatch::Version(*one)),
        _ => Err(ApiError::bad_request(
            "If-Match with more than one entity tag is not supported",
        )),
    }
}

fn parse_tag(tag: &str) -> Option<Version> {
    let inner = tag.strip_prefix('"')?.strip_suffix('"')?;
    inner.parse::<i64>().ok().filter(|v| *v >= 1).map(Version)
}

fn malformed() -> ApiError {
    ApiError::bad_request("If-Match must be a list of entity tags")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn if_none_match_uses_weak_comparison() {
        let v = Version(3);
        assert!(not_modified(&headers(header::IF_NONE_MATCH, "\"3\""), v));
        assert!(not_modified(&headers(header::IF_NONE_MATCH, "W/\"3\""), v));
        assert!(not_modified(
            &headers(header::IF_NONE_MATCH, "\"1\", \"3\""),
            v
        ));
        assert!(not_modified(&headers(header::IF_NONE_MATCH, "*"), v));
        assert!(!not_modified(&headers(header::IF_NONE_MATCH, "\"2\""), v));
        assert!(!not_modified(&HeaderMap::new(), v));
    }

    #[test]
    fn a_missing_item_fails_any_if_match() {
        let missing = || WriteError::NotFound;
        assert!(matches!(
            IfMatch::Absent.explain(missing()),
            ApiError::NotFound(_)
        ));
        for condition in [IfMatch::Exists, IfMatch::Version(Version(1))] {
            assert!(matches!(
                condition.explain(missing()),
                ApiError::PreconditionFailed { .. }
            ));
        }
    }

    #[test]
    fn if_match_uses_strong_comparison() {
        assert_eq!(if_match(&HeaderMap::new()).unwrap(), IfMatch::Absent);
        assert_eq!(
            if_match(&headers(header::IF_MATCH, "*")).unwrap(),
            IfMatch::Exists
        );
        assert_eq!(
            if_match(&headers(header::IF_MATCH, "\"4\"")).unwrap(),
            IfMatch::Version(Version(4))
        );
        assert!(matches!(
            if_match(&headers(header::IF_MATCH, "W/\"4\"")),
            Err(ApiError::PreconditionFailed { .. })
        ));
        assert!(matches!(
            if_match(&headers(header::IF_MATCH, "\"1\", \"2\"")),
            Err(ApiError::BadRequest { .. })
        ));
    }
}
