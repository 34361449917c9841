//! The invalidation message: the original example's JSON shape
//! (`{"key","pattern","timestamp","source"}`) plus a per-sender sequence number.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::cache::{CacheId, CacheKey, KeyPattern, KeyPrefix};

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
    /// When the sending process started (ms since the Unix epoch): tells a
    /// restarted sender, or two processes sharing an instance id, apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<i64>,
    /// A heartbeat: no key, `seq` is the sender's last number, so receivers
    /// notice a lost message even while the sender writes nothing more.
    #[serde(default, skip_serializing_if = "is_false")]
    pub heartbeat: bool,
    /// The sender's last heartbeat before a clean stop: its silence from now
    /// on is not a sign of lost messages.
    #[serde(default, skip_serializing_if = "is_false")]
    pub bye: bool,
}

fn is_false(flag: &bool) -> bool {
    !*flag
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

/// Who publishes: this process, as its messages name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderId {
    /// The instance id (`INSTANCE_ID`).
    pub id: std::sync::Arc<str>,
    /// When this process started, in ms since the Unix epoch.
    pub started: i64,
}

impl SenderId {
    /// Whether `message` is one of ours (rather than from another process,
    /// possibly one configured with the same instance id).
    pub fn sent(&self, message: &InvalidationMessage) -> bool {
        message.is_from_peer()
            && *message.source == *self.id
            && message.started == Some(self.started)
    }
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
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
        sender: &SenderId,
        seq: u64,
    ) -> Self {
        Self {
            key: key.map(|k| k.to_string()).unwrap_or_default(),
            pattern: pattern.map(|p| p.to_string()).unwrap_or_default(),
            timestamp: serde_json::Value::String(now_rfc3339()),
            source: sender.id.to_string(),
            seq: Some(seq),
            started: Some(sender.started),
            heartbeat: false,
            bye: false,
        }
    }

    /// A heartbeat carrying the sender's last sequence number.
    pub fn heartbeat(sender: &SenderId, last_seq: u64, bye: bool) -> Self {
        Self {
            key: String::new(),
            pattern: String::new(),
            timestamp: serde_json::Value::String(now_rfc3339()),
            source: sender.id.to_string(),
            seq: Some(last_seq),
            started: Some(sender.started),
            heartbeat: true,
            bye,
        }
    }

    pub fn parse(payload: &[u8]) -> Result<Self, MessageError> {
        let message: Self = serde_json::from_slice(payload)?;
        if message.key.is_empty() && message.pattern.is_empty() && !message.heartbeat {
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

    /// Resolves key and pattern inside `prefix`; anything outside (or a key
    /// whose id is not a valid `I`) is refused.
    pub fn targets<I: CacheId>(&self, prefix: &KeyPrefix) -> Result<Targets, MessageError> {
        let key = (!self.key.is_empty())
            .then(|| prefix.parse_key::<I>(&self.key))
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
    use crate::cache::testing::Id;

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
        let t = m.targets::<Id>(&prefix()).unwrap();
        assert_eq!(t.key.unwrap().as_str(), "item:1");
        assert!(t.pattern.is_none());

        let m =
            InvalidationMessage::parse(br#"{"key":"","pattern":"item:*","source":"api"}"#).unwrap();
        let t = m.targets::<Id>(&prefix()).unwrap();
        assert!(t.key.is_none());
        assert_eq!(t.pattern.unwrap().as_str(), "item:*");
    }

    #[test]
    fn our_messages_round_trip_and_keep_the_original_fields() {
        let key = prefix().parse_key::<Id>("item:7").unwrap();
        let sender = SenderId {
            id: "pod-a".into(),
            started: 1_700_000_000_000,
        };
        let m = InvalidationMessage::new(Some(&key), None, &sender, 42);
        let json: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(json["key"], "item:7");
        assert_eq!(json["source"], "pod-a");
        assert_eq!(json["seq"], 42);
        assert!(
            json.get("pattern").is_none(),
            "omitted when empty, as in the original"
        );
        assert!(json["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(json["started"], 1_700_000_000_000_i64);
        assert!(json.get("heartbeat").is_none());
        let back = InvalidationMessage::parse(m.to_json().as_bytes()).unwrap();
        assert!(back.is_from_peer());
        assert_eq!(back, m);
        assert!(sender.sent(&back));
        let twin = SenderId {
            started: 1_700_000_000_001,
            ..sender.clone()
        };
        assert!(!twin.sent(&back), "same id, another process");

        let beat = InvalidationMessage::heartbeat(&sender, 42, false);
        let back = InvalidationMessage::parse(beat.to_json().as_bytes()).unwrap();
        assert!(back.heartbeat && !back.bye);
        assert_eq!((back.key.as_str(), back.seq), ("", Some(42)));
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
                m.targets::<Id>(&prefix()).is_err(),
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
    }
}
