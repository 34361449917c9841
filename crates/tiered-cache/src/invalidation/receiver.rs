//! The receiving end of the invalidation channel: what each message, and
//! each change of the subscription, means for the caches. The caches are
//! behind a narrow interface, [`Caches`], which the catalog implements and
//! the tests below fake: this module knows nothing of loads, Redis or the
//! near cache. The near cache is only trusted while every invalidation is
//! known to arrive: a lost subscription, a gap in a sender's sequence
//! numbers, or a sender gone silent without a goodbye flushes it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::lag::LagHistogram;
use super::message::{InvalidationMessage, SenderId};
use super::publisher::silence;
use super::sequence::{Continuity, Kind, Sequences};
use crate::cache::{CacheId, CacheKey, KeyPattern, KeyPrefix, now_ms};

/// What receiving invalidations does to the caches, and nothing more.
pub trait Caches {
    /// Another instance invalidated `key` and/or `pattern` (and deleted them
    /// in Redis already): forget loads of them, evict them from the near
    /// cache.
    fn evict(&self, key: Option<&CacheKey>, pattern: Option<&KeyPattern>);

    /// Another publisher (`redis-cli PUBLISH`, the original example) only
    /// announced them: delete them in Redis too, off the subscriber's path
    /// (a pattern scans the whole database), then evict them again, as
    /// anything filled from Redis meanwhile may be old.
    fn apply_announced(&self, key: Option<CacheKey>, pattern: Option<KeyPattern>);

    /// Invalidations may have been lost: no lookup may join a load that
    /// started before, and the near cache is flushed.
    fn lost(&self);

    /// The subscription is (again) listening: the near cache may be used,
    /// starting empty, and no load from before is joined.
    fn resume(&self);

    /// The subscription is gone: the near cache is flushed and bypassed
    /// until it is back, and no load from before is joined.
    fn suspend(&self);

    /// One invalidation applied (for the statistics).
    fn received(&self);
}

/// The state receiving keeps: who we are (our own messages are not applied
/// twice), the senders' numbering, and the lag measured.
pub struct Receiver {
    sender: SenderId,
    prefix: KeyPrefix,
    /// The senders' heartbeat: silence is a few of them missed.
    heartbeat: Duration,
    sequences: Sequences,
    /// Publish-to-apply lag, shared with the catalog's statistics.
    lag: Arc<LagHistogram>,
    /// Warned once about another process using our instance id.
    twin_warned: AtomicBool,
}

impl Receiver {
    pub fn new(
        sender: SenderId,
        prefix: KeyPrefix,
        heartbeat: Duration,
        lag: Arc<LagHistogram>,
    ) -> Self {
        Self {
            sender,
            prefix,
            heartbeat,
            sequences: Sequences::default(),
            lag,
            twin_warned: AtomicBool::new(false),
        }
    }

    /// Handles a message from the channel, for ids of type `I`. Our peers
    /// have already deleted the keys in Redis; other publishers only
    /// announce, so theirs are applied to Redis here first.
    pub fn message<I: CacheId>(&self, caches: &impl Caches, payload: &[u8]) {
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
                // Invalidations from this sender were lost: any near-cache
                // entry may be one of them.
                caches.lost();
                tracing::warn!(source = %message.source, seq, missed, "invalidations lost; near cache flushed");
            }
            if message.bye {
                self.sequences.forget(&message.source, message.started);
            }
        }
        if message.heartbeat {
            return;
        }
        let targets = match message.targets::<I>(&self.prefix) {
            Ok(targets) => targets,
            Err(err) => {
                tracing::warn!(error = %err, source = %message.source, "ignoring invalidation outside the cache namespace");
                return;
            }
        };
        caches.evict(targets.key.as_ref(), targets.pattern.as_ref());
        if !message.is_from_peer() {
            caches.apply_announced(targets.key, targets.pattern);
        }
        if let Some(lag) = lag_since(&message.timestamp) {
            self.lag.record(lag);
        }
        caches.received();
        tracing::debug!(key = %message.key, pattern = %message.pattern, source = %message.source, "invalidation applied");
    }

    /// Called at every ping while subscribed: a sender that fell silent
    /// without saying goodbye (crashed, or cut off from Redis) may have lost
    /// invalidations that no later message will reveal.
    pub fn tick(&self, caches: &impl Caches) {
        let silent = self.sequences.fallen_silent(silence(self.heartbeat));
        if !silent.is_empty() {
            caches.lost();
            tracing::warn!(senders = ?silent, "instances fell silent; near cache flushed");
        }
    }

    /// The subscriber is listening (again): senders' numbering is taken
    /// afresh from their next message.
    pub fn subscribed(&self, caches: &impl Caches) {
        self.sequences.reset(now_ms());
        caches.resume();
    }

    /// The subscriber lost its connection: invalidations may be lost until
    /// it is back.
    pub fn subscription_lost(&self, caches: &impl Caches) {
        caches.suspend();
    }

    fn warn_twin(&self, id: &str) {
        if !self.twin_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                instance = id,
                "another process uses this instance id; give every instance its own INSTANCE_ID"
            );
        }
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
    use std::sync::Mutex;

    use super::*;
    use crate::cache::testing::Id;

    /// Caches that only write down what they were told.
    #[derive(Default)]
    struct Told(Mutex<Vec<String>>);

    impl Told {
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut self.0.lock().unwrap())
        }
        fn note(&self, what: String) {
            self.0.lock().unwrap().push(what);
        }
    }

    fn shown(key: Option<&CacheKey>, pattern: Option<&KeyPattern>) -> String {
        format!(
            "{}{}",
            key.map_or("", CacheKey::as_str),
            pattern.map_or("", KeyPattern::as_str)
        )
    }

    impl Caches for Told {
        fn evict(&self, key: Option<&CacheKey>, pattern: Option<&KeyPattern>) {
            self.note(format!("evict {}", shown(key, pattern)));
        }
        fn apply_announced(&self, key: Option<CacheKey>, pattern: Option<KeyPattern>) {
            self.note(format!("apply {}", shown(key.as_ref(), pattern.as_ref())));
        }
        fn lost(&self) {
            self.note("lost".into());
        }
        fn resume(&self) {
            self.note("resume".into());
        }
        fn suspend(&self) {
            self.note("suspend".into());
        }
        fn received(&self) {}
    }

    fn sender(id: &str) -> SenderId {
        SenderId {
            id: id.into(),
            started: 1,
        }
    }

    fn receiver(heartbeat: Duration) -> Receiver {
        let prefix = KeyPrefix::parse("item:").unwrap();
        Receiver::new(sender("us"), prefix, heartbeat, Arc::default())
    }

    fn key(raw: &str) -> CacheKey {
        KeyPrefix::parse("item:")
            .unwrap()
            .parse_key::<Id>(raw)
            .unwrap()
    }

    fn from(peer: &SenderId, seq: u64, raw: &str) -> Vec<u8> {
        InvalidationMessage::new(Some(&key(raw)), None, peer, seq)
            .to_json()
            .into_bytes()
    }

    #[test]
    fn a_peers_invalidation_is_evicted_and_another_publishers_applied_to_redis_too() {
        let (receiver, told) = (receiver(Duration::from_secs(1)), Told::default());
        receiver.subscribed(&told);
        receiver.message::<Id>(&told, &from(&sender("peer"), 1, "item:1"));
        assert_eq!(told.take(), ["resume", "evict item:1"]);
        receiver.message::<Id>(&told, br#"{"key":"item:2","source":"cli"}"#);
        assert_eq!(told.take(), ["evict item:2", "apply item:2"]);
    }

    #[test]
    fn our_own_messages_and_keys_outside_the_namespace_change_nothing() {
        let (receiver, told) = (receiver(Duration::from_secs(1)), Told::default());
        receiver.message::<Id>(&told, &from(&sender("us"), 1, "item:1"));
        receiver.message::<Id>(&told, br#"{"key":"other:1","source":"cli"}"#);
        receiver.message::<Id>(&told, b"not json");
        assert!(told.take().is_empty());
    }

    #[test]
    fn a_gap_in_a_senders_numbering_means_invalidations_were_lost() {
        let (receiver, told) = (receiver(Duration::from_secs(1)), Told::default());
        receiver.subscribed(&told);
        let peer = sender("peer");
        receiver.message::<Id>(&told, &from(&peer, 1, "item:1"));
        receiver.message::<Id>(&told, &from(&peer, 2, "item:2"));
        receiver.message::<Id>(&told, &from(&peer, 5, "item:5"));
        assert_eq!(
            told.take(),
            [
                "resume",
                "evict item:1",
                "evict item:2",
                "lost",
                "evict item:5"
            ]
        );
    }

    #[test]
    fn a_sender_silent_past_its_heartbeats_means_invalidations_may_be_lost() {
        let heartbeat = Duration::from_millis(10);
        let (receiver, told) = (receiver(heartbeat), Told::default());
        receiver.subscribed(&told);
        let peer = sender("peer");
        let beat = InvalidationMessage::heartbeat(&peer, 0, false).to_json();
        receiver.message::<Id>(&told, beat.as_bytes());
        receiver.tick(&told);
        assert_eq!(told.take(), ["resume"], "a heartbeat evicts nothing");
        std::thread::sleep(silence(heartbeat) + Duration::from_millis(20));
        receiver.tick(&told);
        assert_eq!(told.take(), ["lost"]);
        let bye = InvalidationMessage::heartbeat(&peer, 0, true).to_json();
        receiver.message::<Id>(&told, bye.as_bytes());
        std::thread::sleep(silence(heartbeat) + Duration::from_millis(20));
        receiver.tick(&told);
        assert!(told.take().is_empty(), "a goodbye is not silence");
    }

    #[test]
    fn a_lost_subscription_suspends_the_near_cache() {
        let (receiver, told) = (receiver(Duration::from_secs(1)), Told::default());
        receiver.subscription_lost(&told);
        assert_eq!(told.take(), ["suspend"]);
    }

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
