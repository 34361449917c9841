//! The receiving end of the invalidation channel: messages from peers and
//! other publishers, and what the subscriber's health means for the near
//! cache (L1). L1 is only trusted while every invalidation is known to
//! arrive: a lost subscription, or a gap in a sender's sequence numbers,
//! flushes it.

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Catalog;
use crate::cache::CacheStats;
use crate::invalidation::{Continuity, InvalidationMessage};

impl Catalog {
    /// Handles a message from the invalidation channel. Our peers have
    /// already deleted the keys in Redis; other publishers (such as `redis-cli
    /// PUBLISH` or the original example) only announce, so their messages are
    /// applied to Redis here first.
    pub async fn on_invalidation_message(&self, payload: &[u8]) {
        let message = match InvalidationMessage::parse(payload) {
            Ok(message) => message,
            Err(err) => {
                tracing::warn!(error = %err, "ignoring malformed invalidation message");
                return;
            }
        };
        if message.source == *self.instance && message.is_from_peer() {
            return;
        }
        if let (true, Some(seq)) = (message.is_from_peer(), message.seq)
            && let Continuity::Gap { missed } = self.sequences.observe(&message.source, seq)
        {
            // Invalidations from this sender were lost: any L1 entry may be
            // one of them.
            CacheStats::bump(&self.stats.invalidation_gaps);
            self.l1.flush();
            tracing::warn!(source = %message.source, seq, missed, "invalidations lost; near cache flushed");
        }
        let targets = match message.targets(&self.prefix) {
            Ok(targets) => targets,
            Err(err) => {
                tracing::warn!(error = %err, source = %message.source, "ignoring invalidation outside the cache namespace");
                return;
            }
        };
        let (key, pattern) = (targets.key.as_ref(), targets.pattern.as_ref());
        self.forget_loads(key, pattern);
        if !message.is_from_peer() {
            self.apply_to_redis(key, pattern).await;
        }
        self.evict_from_l1(key, pattern);
        if let Some(lag) = lag_since(&message.timestamp) {
            self.lag.record(lag);
        }
        CacheStats::bump(&self.stats.invalidations_received);
        tracing::debug!(key = %message.key, pattern = %message.pattern, source = %message.source, "invalidation applied");
    }

    /// The subscriber is listening (again): invalidations arrive from now on,
    /// so L1 may be used again, starting empty. Senders' numbering is taken
    /// afresh from their next message.
    pub fn on_subscribed(&self) {
        self.sequences.reset();
        self.l1.resume();
    }

    /// The subscriber lost its connection: invalidations may be lost until it
    /// is back, so L1 is flushed and bypassed until then.
    pub fn on_subscription_lost(&self) {
        if self.l1.is_usable() {
            tracing::warn!(
                "invalidations may be lost; near cache flushed and bypassed until resubscribed"
            );
        }
        self.l1.suspend();
    }
}

/// Time since an RFC 3339 `timestamp` (as our instances and the original
/// example write them); `None` for anything else. Zero under clock skew.
fn lag_since(timestamp: &serde_json::Value) -> Option<Duration> {
    let sent = OffsetDateTime::parse(timestamp.as_str()?, &Rfc3339).ok()?;
    let lag = OffsetDateTime::now_utc() - sent;
    Some(Duration::try_from(lag).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_read_from_rfc3339_timestamps_only() {
        let now = OffsetDateTime::now_utc() - time::Duration::milliseconds(250);
        let stamp = serde_json::Value::String(now.format(&Rfc3339).unwrap());
        let lag = lag_since(&stamp).unwrap();
        assert!(lag >= Duration::from_millis(250) && lag < Duration::from_secs(60));
        let future = OffsetDateTime::now_utc() + time::Duration::hours(1);
        let ahead = serde_json::Value::String(future.format(&Rfc3339).unwrap());
        assert_eq!(lag_since(&ahead), Some(Duration::ZERO), "clock skew");
        assert_eq!(lag_since(&serde_json::json!(1_764_000_000)), None);
        assert_eq!(lag_since(&serde_json::json!("yesterday")), None);
    }
}
