//! `ApiJson`: the JSON body extractor, with rejections in our error shape and
//! messages that name the offending field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::error::ApiError;
use super::server::BodyDeadline;

/// Largest request body accepted, in bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // A body without a Content-Type is read as JSON (handy with bare curl);
        // one declared as something else is refused.
        if let Some(content_type) = req.headers().get(header::CONTENT_TYPE)
            && !is_json(content_type.to_str().unwrap_or_default())
        {
            return Err(ApiError::UnsupportedMediaType);
        }
        let deadline = req.extensions().get::<BodyDeadline>().copied();
        let read = Bytes::from_request(req, state);
        let read = match deadline {
            Some(BodyDeadline(at)) => tokio::time::timeout_at(at, read)
                .await
                .map_err(|_| ApiError::RequestTimeout)?,
            None => read.await,
        };
        let bytes = read.map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit: BODY_LIMIT },
            _ => ApiError::bad_request("could not read the request body"),
        })?;
        parse(&bytes).map(ApiJson)
    }
}

fn is_json(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Parses a JSON body into `T`, reporting syntax errors by position and type
/// errors by field path (e.g. `ids[2]`).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "request body is empty; expected a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let field = err.path().to_string();
        describe(err.into_inner(), Some(field))
    })?;
    de.end().map_err(|err| describe(err, None))?;
    Ok(value)
}

fn describe(err: serde_json::Error, field: Option<String>) -> ApiError {
    use serde_json::error::Category;
    let reason = without_position(&err.to_string());
    match err.classify() {
        Category::Data => ApiError::bad_request_with(
            "invalid request body",
            json!({ "field": field.filter(|f| f != "."), "reason": reason }),
        ),
        Category::Syntax | Category::Eof | Category::Io => ApiError::bad_request_with(
            "malformed JSON",
            json!({ "line": err.line(), "column": err.column(), "reason": reason }),
        ),
    }
}

/// serde_json appends " at line L column C"; the details carry those separately.
fn without_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        ids: Vec<String>,
    }

    fn details(err: ApiError) -> serde_json::Value {
        match err {
            ApiError::BadRequest { details, .. } => details.unwrap_or_default(),
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn type_errors_name_the_field() {
        let err = parse::<Body>(br#"{"ids": ["1", 2]}"#).unwrap_err();
        let d = details(err);
        assert_eq!(d["field"], "ids[1]");
        assert!(d["reason"].as_str().unwrap().contains("expected a string"));
        assert!(!d["reason"].as_str().unwrap().contains("at line"));
    }

    #[test]
    fn syntax_errors_give_a_position() {
        let d = details(parse::<Body>(b"{\"ids\": [").unwrap_err());
        assert_eq!(d["line"], 1);
        let d = details(parse::<Body>(br#"{"ids": []} trailing"#).unwrap_err());
        assert!(d["reason"].as_str().unwrap().contains("trailing"));
    }

    #[test]
    fn empty_bodies_are_refused_clearly() {
        assert!(matches!(
            parse::<Body>(b"  "),
            Err(ApiError::BadRequest { .. })
        ));
    }

    #[test]
    fn json_media_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ] {
            assert!(!is_json(bad), "{bad}");
        }
    }
}
