//! Invalidations that could not be applied to Redis yet (Redis down, slow or
//! refusing). Until one is applied, reads of the keys it covers skip Redis
//! entirely, so a delete that failed after a committed write can never let a
//! client read a value older than that write once Redis is back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::key::{CacheKey, KeyPattern};
use super::l2::RedisCache;
use super::link::LinkState;
use crate::backoff::Backoff;

/// Past this many distinct keys (or patterns), the whole namespace is flushed
/// instead: memory stays bounded however long Redis is away.
const MAX_KEYS: usize = 10_000;
const MAX_PATTERNS: usize = 64;

#[derive(Default)]
pub struct DeferredInvalidations {
    /// Lets the read path skip the lock in the normal, empty case.
    any: AtomicBool,
    /// Held only for map operations, never across an `.await`.
    state: Mutex<State>,
    /// Wakes the retry task when the first entry arrives.
    added: Notify,
}

/// Each entry remembers the stamp of its latest `add`; the retry task removes an
/// entry only if the stamp it applied is still the latest, so an invalidation
/// added while a retry is in flight is not lost with it.
#[derive(Default)]
struct State {
    stamp: u64,
    keys: HashMap<CacheKey, u64>,
    patterns: HashMap<KeyPattern, u64>,
    everything: Option<u64>,
}

#[derive(Default)]
struct Snapshot {
    keys: Vec<(CacheKey, u64)>,
    patterns: Vec<(KeyPattern, u64)>,
    everything: Option<u64>,
}

/// Invalidations just applied to Redis, for the caller to announce.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub keys: Vec<CacheKey>,
    pub patterns: Vec<KeyPattern>,
    /// The whole namespace was flushed.
    pub everything: bool,
}

impl Snapshot {
    fn applied(&self) -> Applied {
        Applied {
            keys: self.keys.iter().map(|(k, _)| k.clone()).collect(),
            patterns: self.patterns.iter().map(|(p, _)| p.clone()).collect(),
            everything: self.everything.is_some(),
        }
    }
}

impl DeferredInvalidations {
    pub fn add_key(&self, key: CacheKey) {
        self.update(|state, stamp| {
            if state.keys.len() >= MAX_KEYS && !state.keys.contains_key(&key) {
                state.everything = Some(stamp);
            } else {
                state.keys.insert(key, stamp);
            }
        });
    }

    pub fn add_pattern(&self, pattern: KeyPattern) {
        self.update(|state, stamp| {
            if state.patterns.len() >= MAX_PATTERNS && !state.patterns.contains_key(&pattern) {
                state.everything = Some(stamp);
            } else {
                state.patterns.insert(pattern, stamp);
            }
        });
    }

    /// Whether reads of `key` must bypass Redis until its deferred invalidation is applied.
    pub fn blocks(&self, key: &CacheKey) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let state = self.lock();
        state.everything.is_some()
            || state.keys.contains_key(key)
            || state.patterns.keys().any(|p| p.matches(key))
    }

    pub fn len(&self) -> usize {
        let state = self.lock();
        state.keys.len() + state.patterns.len() + usize::from(state.everything.is_some())
    }

    pub fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Acquire)
    }

    fn update(&self, change: impl FnOnce(&mut State, u64)) {
        let mut state = self.lock();
        state.stamp += 1;
        let stamp = state.stamp;
        change(&mut state, stamp);
        self.any.store(true, Ordering::Release);
        drop(state);
        self.added.notify_one();
    }

    fn snapshot(&self) -> Snapshot {
        let state = self.lock();
        Snapshot {
            keys: state.keys.iter().map(|(k, s)| (k.clone(), *s)).collect(),
            patterns: state
                .patterns
                .iter()
                .map(|(p, s)| (p.clone(), *s))
                .collect(),
            everything: state.everything,
        }
    }

    /// Forgets the entries of `done` that were not re-added meanwhile.
    fn settle(&self, done: Snapshot) {
        let mut state = self.lock();
        for (key, stamp) in done.keys {
            if state.keys.get(&key) == Some(&stamp) {
                state.keys.remove(&key);
            }
        }
        for (pattern, stamp) in done.patterns {
            if state.patterns.get(&pattern) == Some(&stamp) {
                state.patterns.remove(&pattern);
            }
        }
        if done.everything.is_some() && state.everything == done.everything {
            state.everything = None;
        }
        let any =
            !state.keys.is_empty() || !state.patterns.is_empty() || state.everything.is_some();
        self.any.store(any, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One attempt to apply everything deferred: what was applied, if
    /// anything; the rest stays deferred.
    pub async fn apply_once(&self, l2: &RedisCache, everything: &KeyPattern) -> Option<Applied> {
        if self.is_empty() {
            return None;
        }
        let work = self.snapshot();
        apply(l2, &work, everything).await.ok()?;
        let applied = work.applied();
        self.settle(work);
        Some(applied)
    }

    /// Applies deferred invalidations whenever Redis is reachable, until
    /// `cancel` fires, handing each batch applied to `announce` (which says
    /// whether it could announce it).
    pub async fn retry_until_cancelled<F, Fut>(
        self: Arc<Self>,
        l2: RedisCache,
        everything: KeyPattern,
        cancel: CancellationToken,
        announce: F,
    ) where
        F: Fn(Applied) -> Fut,
        Fut: Future<Output = bool>,
    {
        let mut link_state = l2.link().watch_state();
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        loop {
            if self.is_empty() {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = self.added.notified() => continue,
                }
            }
            let connected = tokio::select! {
                _ = cancel.cancelled() => return,
                r = link_state.wait_for(|s| *s == LinkState::Connected) => r.is_ok(),
            };
            if !connected {
                return;
            }
            let work = self.snapshot();
            match apply(&l2, &work, &everything).await {
                Ok(()) => {
                    tracing::info!(
                        keys = work.keys.len(),
                        patterns = work.patterns.len(),
                        namespace = work.everything.is_some(),
                        "applied invalidations delayed by a redis outage"
                    );
                    let applied = work.applied();
                    self.settle(work);
                    if announce(applied).await {
                        backoff.reset();
                    } else {
                        // Deleted, but not announced: the announcement comes
                        // back as deferred work; do not retry it in a loop.
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(backoff.next_delay()) => {}
                        }
                    }
                }
                Err(err) => {
                    tracing::debug!(error = %err, "delayed invalidations still cannot reach redis");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
    }
}

async fn apply(
    l2: &RedisCache,
    work: &Snapshot,
    everything: &KeyPattern,
) -> Result<(), super::link::RedisFailure> {
    if work.everything.is_some() {
        l2.delete_matching(everything).await?;
    }
    let keys: Vec<CacheKey> = work.keys.iter().map(|(k, _)| k.clone()).collect();
    for chunk in keys.chunks(1000) {
        l2.delete(chunk).await?;
    }
    for (pattern, _) in &work.patterns {
        l2.delete_matching(pattern).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::KeyPrefix;

    fn key(prefix: &KeyPrefix, id: &str) -> CacheKey {
        prefix
            .parse_key::<crate::cache::testing::Id>(&format!("{}{id}", prefix.as_str()))
            .unwrap()
    }

    #[test]
    fn blocks_keys_and_patterns_until_settled() {
        let prefix = KeyPrefix::parse("item:").unwrap();
        let deferred = DeferredInvalidations::default();
        assert!(!deferred.blocks(&key(&prefix, "1")));
        deferred.add_key(key(&prefix, "1"));
        deferred.add_pattern(prefix.parse_pattern("item:2*").unwrap());
        assert!(deferred.blocks(&key(&prefix, "1")));
        assert!(deferred.blocks(&key(&prefix, "25")));
        assert!(!deferred.blocks(&key(&prefix, "3")));
        let work = deferred.snapshot();
        deferred.settle(work);
        assert!(deferred.is_empty());
        assert!(!deferred.blocks(&key(&prefix, "1")));
    }

    #[test]
    fn re_added_entries_survive_a_concurrent_settle() {
        let prefix = KeyPrefix::parse("item:").unwrap();
        let deferred = DeferredInvalidations::default();
        deferred.add_key(key(&prefix, "1"));
        let work = deferred.snapshot();
        deferred.add_key(key(&prefix, "1"));
        deferred.settle(work);
        assert!(deferred.blocks(&key(&prefix, "1")));
    }

    #[test]
    fn overflow_turns_into_a_namespace_flush() {
        let prefix = KeyPrefix::parse("item:").unwrap();
        let deferred = DeferredInvalidations::default();
        for i in 0..=MAX_KEYS {
            deferred.add_key(key(&prefix, &i.to_string()));
        }
        assert!(deferred.blocks(&key(&prefix, "never-written")));
        deferred.settle(deferred.snapshot());
        assert!(deferred.is_empty());
    }
}
