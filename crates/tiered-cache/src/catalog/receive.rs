//! The receiving end of the invalidation channel: messages from peers and
//! other publishers, and what the subscriber's health means for the near
//! cache (L1). L1 is only trusted while every invalidation is known to
//! arrive: a lost subscription, a gap in a sender's sequence numbers, or a
//! sender gone silent without a goodbye flushes it.

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::Instrument;

use super::{Catalog, Source};
use crate::cache::{self, CacheStats};
use crate::invalidation::{Continuity, InvalidationMessage, Kind, Listener, silence};

/// The catalog is what the invalidation subscriber reports to.
impl<S: Source> Listener for Catalog<S> {
    fn subscribed(&self) {
        self.on_subscribed();
    }

    fn subscription_lost(&self) {
        self.on_subscription_lost();
    }

    async fn message(&self, payload: &[u8]) {
        self.on_invalidation_message(payload).await;
    }

    fn tick(&self) {
        self.check_senders();
    }
}

impl<S: Source> Catalog<S> {
    /// Handles a message from the invalidation channel. Our peers have
    /// already deleted the keys in Redis; other publishers (such as `redis-cli
    /// PUBLISH` or the original example) only announce, so their messages are
    /// applied to Redis here first.
    async fn on_invalidation_message(&self, payload: &[u8]) {
        let message = match InvalidationMessage::parse(payload) {
            Ok(message) => message,
            Err(err) => {
                tracing::warn!(error = %err, "ignoring malformed invalidation message");
                return;
            }
        };
        if self.sender.sent(&message) {
            return;
        }
        if message.is_from_peer() && *message.source == *self.sender.id {
            self.warn_twin(&message.source);
        }
        if let Some(seq) = message.seq.filter(|_| message.is_from_peer()) {
            let kind = if message.heartbeat {
                Kind::Heartbeat
            } else {
                Kind::Invalidation
            };
            let continuity = self
                .sequences
                .observe(&message.source, message.started, seq, kind);
            if let Continuity::Gap { missed } = continuity {
                // Invalidations from this sender were lost: any L1 entry may
                // be one of them.
                self.lost_invalidations();
                tracing::warn!(source = %message.source, seq, missed, "invalidations lost; near cache flushed");
            }
            if message.bye {
                self.sequences.forget(&message.source, message.started);
            }
        }
        if message.heartbeat {
            return;
        }
        let targets = match message.targets::<S::Id>(&self.prefix) {
            Ok(targets) => targets,
            Err(err) => {
                tracing::warn!(error = %err, source = %message.source, "ignoring invalidation outside the cache namespace");
                return;
            }
        };
        let (key, pattern) = (targets.key.as_ref(), targets.pattern.as_ref());
        self.forget_loads(key, pattern);
        self.evict_from_l1(key, pattern);
        if !message.is_from_peer() {
            // Other publishers only announce: delete in Redis too, off the
            // subscriber's path (a pattern scans the whole database), then
            // evict again, as anything filled from Redis meanwhile may be old.
            let (this, key, pattern) = (self.clone(), targets.key.clone(), targets.pattern.clone());
            let span = crate::telemetry::spans::invalidation_announced();
            let apply = async move {
                this.apply_to_redis(key.as_ref(), pattern.as_ref()).await;
                this.forget_loads(key.as_ref(), pattern.as_ref());
                this.evict_from_l1(key.as_ref(), pattern.as_ref());
            };
            self.writes.spawn(apply.instrument(span));
        }
        if let Some(lag) = lag_since(&message.timestamp) {
            self.lag.record(lag);
        }
        CacheStats::bump(&self.stats.invalidations_received);
        tracing::debug!(key = %message.key, pattern = %message.pattern, source = %message.source, "invalidation applied");
    }

    /// Called at every ping while subscribed: a sender that fell silent
    /// without saying goodbye (crashed, or cut off from Redis) may have lost
    /// invalidations that no later message will reveal.
    fn check_senders(&self) {
        let silent = self.sequences.fallen_silent(silence(self.policy.heartbeat));
        if !silent.is_empty() {
            self.lost_invalidations();
            tracing::warn!(senders = ?silent, "instances fell silent; near cache flushed");
        }
    }

    fn lost_invalidations(&self) {
        CacheStats::bump(&self.stats.invalidation_gaps);
        self.forget_all_loads();
        self.l1.flush();
    }

    fn warn_twin(&self, id: &str) {
        if !self
            .twin_warned
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                instance = id,
                "another process uses this instance id; give every instance its own INSTANCE_ID"
            );
        }
    }

    /// The subscriber is listening (again): invalidations arrive from now on,
    /// so L1 may be used again, starting empty. Senders' numbering is taken
    /// afresh from their next message.
    fn on_subscribed(&self) {
        self.sequences.reset(cache::now_ms());
        self.forget_all_loads();
        self.l1.resume();
    }

    /// The subscriber lost its connection: invalidations may be lost until it
    /// is back, so L1 is flushed and bypassed until then.
    fn on_subscription_lost(&self) {
        if self.l1.is_usable() {
            tracing::warn!(
                "invalidations may be lost; near cache flushed and bypassed until resubscribed"
            );
        }
        self.l1.suspend();
        self.forget_all_loads();
    }

    /// The shared Redis connection changed state. While it is down the near
    /// cache is bypassed: Redis may be frozen or cut off, and the
    /// subscription may not have noticed yet.
    pub fn on_link_state(&self, connected: bool) {
        let was_usable = self.l1.is_usable();
        self.l1.set_linked(connected);
        // Loads in flight are left alone: invalidations still arrive on the
        // subscription, and forget them, unless it breaks too.
        if !connected && was_usable {
            tracing::warn!(
                "redis connection lost; near cache flushed and bypassed until it is back"
            );
        }
    }

    /// After invalidations may have been lost, no lookup may join a load that
    /// started before: its answer may be one of them.
    fn forget_all_loads(&self) {
        self.flights.forget_where(|_| true);
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
