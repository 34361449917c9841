//! The invalidation message: the original example's JSON shape
//! (`{"key","pattern","timestamp","source"}`) plus a per-sender sequence number.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::cache::{CacheKey, KeyPattern, KeyPrefix};

/// One message on the invalidation channel.
///
/// Messages we publish always carry `seq` (per sender, starting at 1) and
/// `source` (the instance id); our instances have already applied them to
/// Redis before publishing. Messages without `seq` come from other tools, such
/// as `redis-cli PUBLISH` or the original example, which only publish: a
/// receiving instance applies those to Redis itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvalidationMessage {
    /// A full key (`item:1`); empty when only a pattern is sent, as in the original.
    #[serde(default)]
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pattern: String,
    /// RFC 3339 when we publish; other publishers' values are kept as they are.
    #[serde(default)]
    pub timestamp: serde_json::Value,
    #[serde(default)]
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("not a JSON invalidation message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("message has neither key nor pattern")]
    Empty,
    #[error(transparent)]
    OutsideNamespace(#[from] crate::cache::KeyError),
}

/// What a message asks to invalidate, checked against our namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    pub key: Option<CacheKey>,
    pub pattern: Option<KeyPattern>,
}

impl InvalidationMessage {
    pub fn new(
        key: Option<&CacheKey>,
        pattern: Option<&KeyPattern>,
        source: &str,
        seq: u64,
    ) -> Self {
        let now = OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Self {
            key: key.map(|k| k.to_string()).unwrap_or_default(),
            pattern: pattern.map(|p| p.to_string()).unwrap_or_default(),
            timestamp: serde_json::Value::String(now),
            source: source.to_owned(),
            seq: Some(seq),
        }
    }

    pub fn parse(payload: &[u8]) -> Result<Self, MessageError> {
        let message: Self = serde_json::from_slice(payload)?;
        if message.key.is_empty() && message.pattern.is_empty() {
            return Err(MessageError::Empty);
        }
        Ok(message)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("invalidation messages always serialize")
    }

    /// True for messages published by an instance of this service, which has
    /// already deleted the keys in Redis.
    pub fn is_from_peer(&self) -> bool {
        self.seq.is_some() && !self.source.is_empty()
    }

    /// Resolves key and pattern inside `prefix`; anything outside is refused.
    pub fn targets(&self, prefix: &KeyPrefix) -> Result<Targets, MessageError> {
        let key = (!self.key.is_empty())
            .then(|| prefix.parse_key(&self.key))
            .transpose()?;
        let pattern = (!self.pattern.is_empty())
            .then(|| prefix.parse_pattern(&self.pattern))
            .transpose()?;
        Ok(Targets { key, pattern })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix() -> KeyPrefix {
        KeyPrefix::parse("item:").unwrap()
    }

    #[test]
    fn reads_the_original_shape() {
        let m = InvalidationMessage::parse(
            br#"{"key":"item:1","timestamp":"2025-01-01T00:00:00.123456789Z","source":"api"}"#,
        )
        .unwrap();
        assert!(!m.is_from_peer());
        let t = m.targets(&prefix()).unwrap();
        assert_eq!(t.key.unwrap().as_str(), "item:1");
        assert!(t.pattern.is_none());

        let m =
            InvalidationMessage::parse(br#"{"key":"","pattern":"item:*","source":"api"}"#).unwrap();
        let t = m.targets(&prefix()).unwrap();
        assert!(t.key.is_none());
        assert_eq!(t.pattern.unwrap().as_str(), "item:*");
    }

    #[test]
    fn our_messages_round_trip_and_keep_the_original_fields() {
        let key = prefix().parse_key("item:7").unwrap();
        let m = InvalidationMessage::new(Some(&key), None, "pod-a", 42);
        let json: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(json["key"], "item:7");
        assert_eq!(json["source"], "pod-a");
        assert_eq!(json["seq"], 42);
        assert!(
            json.get("pattern").is_none(),
            "omitted when empty, as in the original"
        );
        assert!(json["timestamp"].as_str().unwrap().ends_with('Z'));
        let back = InvalidationMessage::parse(m.to_json().as_bytes()).unwrap();
        assert!(back.is_from_peer());
        assert_eq!(back, m);
    }

    #[test]
    fn rejects_garbage_empty_and_foreign_namespaces() {
        assert!(matches!(
            InvalidationMessage::parse(b"item:1"),
            Err(MessageError::Json(_))
        ));
        assert!(matches!(
            InvalidationMessage::parse(b"{}"),
            Err(MessageError::Empty)
        ));
        for payload in [
            &br#"{"pattern":"*"}"#[..],
            br#"{"pattern":"other:*"}"#,
            br#"{"key":"other:1"}"#,
            br#"{"key":"item:*"}"#,
        ] {
            let m = InvalidationMessage::parse(payload).unwrap();
            assert!(
                m.targets(&prefix()).is_err(),
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
    }
}
