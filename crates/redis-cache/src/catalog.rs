//! The catalogue service: item reads through the cache and writes that keep the
//! cache honest. HTTP handlers call this; it calls the store and the cache. The
//! order of operations and the races it closes are described in [`crate::cache`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::task::TaskTracker;

use crate::cache::{
    self, CacheKey, CacheStats, CacheStatus, KeyPattern, KeyPrefix, Overwrite,
    PendingInvalidations, RedisCache, RedisFailure, StatsSnapshot,
};
use crate::domain::{Item, ItemId, ItemPatch, NewItem, Version};
use crate::invalidation::{self, InvalidationMessage};
use crate::store::{Store, StoreError, WriteError};

/// Bound on one `total_keys` count, however large or slow Redis is.
const KEY_COUNT_DEADLINE: Duration = Duration::from_secs(5);
/// Fills sent per pipeline when warming.
const WARM_CHUNK: usize = 500;

/// Cheap to clone: every field is a handle.
#[derive(Clone)]
pub struct Catalog {
    store: Store,
    l2: RedisCache,
    prefix: KeyPrefix,
    pending: Arc<PendingInvalidations>,
    stats: Arc<CacheStats>,
    source_delay: Duration,
    instance: Arc<str>,
    /// Sequence number of the last invalidation this instance published.
    seq: Arc<AtomicU64>,
    /// Write paths in flight, spawned so they finish even if the request is
    /// dropped (see [`Catalog::detached`]).
    writes: TaskTracker,
    /// The last namespace key count and when it finished. The async mutex
    /// makes concurrent `/stats` calls share one `SCAN`.
    key_count: Arc<tokio::sync::Mutex<Option<(Instant, u64)>>>,
}

/// The answer to a single lookup.
#[derive(Debug)]
pub struct Lookup {
    pub item: Option<Item>,
    pub status: CacheStatus,
}

/// The answer to a batch lookup of distinct ids.
#[derive(Debug)]
pub struct BatchLookup {
    /// Found items, in the order of the ids asked for.
    pub items: Vec<Item>,
    /// Ids with no item, in the order asked for.
    pub missing: Vec<ItemId>,
    pub hits: usize,
    pub misses: usize,
    /// `BYPASS` if Redis could not be used, else `HIT` when every id hit.
    pub status: CacheStatus,
}

/// What a manual invalidation did.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalidated {
    /// Keys removed from Redis before answering.
    pub deleted: u64,
    /// True when Redis could not be reached: the invalidation is applied as
    /// soon as it is back, and reads of the affected keys bypass Redis until then.
    pub deferred: bool,
}

/// What warming did.
#[derive(Debug, PartialEq, Eq, serde::Serialize)]
pub struct Warmed {
    /// Items read from the source of truth.
    pub read: usize,
    /// Of those, items written to Redis (the rest were already cached).
    pub loaded: usize,
    /// False when Redis stopped answering part-way.
    pub complete: bool,
}

impl Catalog {
    pub fn new(
        store: Store,
        l2: RedisCache,
        prefix: KeyPrefix,
        source_delay: Duration,
        instance: &str,
    ) -> Self {
        Self {
            store,
            l2,
            prefix,
            pending: Arc::default(),
            stats: Arc::default(),
            source_delay,
            instance: instance.into(),
            seq: Arc::default(),
            writes: TaskTracker::new(),
            key_count: Arc::default(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn l2(&self) -> &RedisCache {
        &self.l2
    }

    pub fn prefix(&self) -> &KeyPrefix {
        &self.prefix
    }

    pub fn pending(&self) -> &Arc<PendingInvalidations> {
        &self.pending
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    pub fn reset_stats(&self) {
        self.stats.reset();
    }

    // ---- reads -------------------------------------------------------------

    pub async fn get(&self, id: &ItemId) -> Result<Lookup, StoreError> {
        CacheStats::bump(&self.stats.lookups);
        let key = self.prefix.key(id);
        let cached = if self.pending.blocks(&key) {
            Err(RedisFailure::Disconnected)
        } else {
            self.l2.get(&key).await
        };
        let mut corrupt = false;
        let status = match cached {
            Ok(Some(bytes)) => match cache::decode(id, &bytes) {
                Ok(item) => {
                    CacheStats::bump(&self.stats.hits);
                    return Ok(Lookup {
                        item: Some(item),
                        status: CacheStatus::Hit,
                    });
                }
                Err(err) => {
                    self.note_corrupt(&key, &err);
                    corrupt = true;
                    CacheStatus::Miss
                }
            },
            Ok(None) => CacheStatus::Miss,
            Err(failure) => {
                tracing::debug!(%key, error = %failure, "redis bypassed for lookup");
                CacheStatus::Bypass
            }
        };
        self.count_misses(status, 1);
        let item = self.load(|store| store.get(id)).await?;
        if status == CacheStatus::Miss {
            match &item {
                Some(item) => self.fill(vec![(key, cache::encode(item))]).await,
                None if corrupt => self.forget_corrupt(&key).await,
                None => {}
            }
        }
        Ok(Lookup { item, status })
    }

    /// Looks up distinct `ids` with one Redis round trip for all of them, one
    /// source-of-truth query for all misses and one pipeline for all fills.
    pub async fn get_many(&self, ids: &[ItemId]) -> Result<BatchLookup, StoreError> {
        CacheStats::add(&self.stats.lookups, ids.len() as u64);
        let keys: Vec<CacheKey> = ids.iter().map(|id| self.prefix.key(id)).collect();
        let askable: Vec<usize> = (0..ids.len())
            .filter(|&i| !self.pending.blocks(&keys[i]))
            .collect();
        let asked: Vec<CacheKey> = askable.iter().map(|&i| keys[i].clone()).collect();
        let mut found: Vec<Option<Item>> = vec![None; ids.len()];
        let mut status = vec![CacheStatus::Bypass; ids.len()];
        let mut corrupt = vec![false; ids.len()];
        match self.l2.get_many(&asked).await {
            Ok(values) => {
                for (&i, value) in askable.iter().zip(values) {
                    status[i] = CacheStatus::Miss;
                    let Some(bytes) = value else { continue };
                    match cache::decode(&ids[i], &bytes) {
                        Ok(item) => {
                            found[i] = Some(item);
                            status[i] = CacheStatus::Hit;
                        }
                        Err(err) => {
                            self.note_corrupt(&keys[i], &err);
                            corrupt[i] = true;
                        }
                    }
                }
            }
            Err(failure) => {
                tracing::debug!(error = %failure, keys = asked.len(), "redis bypassed for batch");
            }
        }

        let hits = status.iter().filter(|s| **s == CacheStatus::Hit).count();
        let bypassed = status.iter().filter(|s| **s == CacheStatus::Bypass).count();
        CacheStats::add(&self.stats.hits, hits as u64);
        CacheStats::add(&self.stats.misses, (ids.len() - hits) as u64);
        CacheStats::add(&self.stats.bypasses, bypassed as u64);

        let to_load: Vec<ItemId> = (0..ids.len())
            .filter(|&i| found[i].is_none())
            .map(|i| ids[i].clone())
            .collect();
        if !to_load.is_empty() {
            let loaded = self.load(|store| store.get_many(&to_load)).await?;
            let mut by_id: HashMap<ItemId, Item> = loaded
                .into_iter()
                .map(|item| (item.id.clone(), item))
                .collect();
            let mut fills = Vec::new();
            let mut corrupt_gone = Vec::new();
            for i in 0..ids.len() {
                if found[i].is_some() {
                    continue;
                }
                found[i] = by_id.remove(&ids[i]);
                if status[i] != CacheStatus::Miss {
                    continue;
                }
                match &found[i] {
                    Some(item) => fills.push((keys[i].clone(), cache::encode(item))),
                    None if corrupt[i] => corrupt_gone.push(keys[i].clone()),
                    None => {}
                }
            }
            self.fill(fills).await;
            if !corrupt_gone.is_empty() {
                let _ = self.l2.delete(&corrupt_gone).await;
            }
        }

        let mut items = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for (id, item) in ids.iter().zip(found) {
            match item {
                Some(item) => items.push(item),
                None => missing.push(id.clone()),
            }
        }
        Ok(BatchLookup {
            items,
            missing,
            hits,
            misses: ids.len() - hits,
            status: if bypassed > 0 {
                CacheStatus::Bypass
            } else if hits == ids.len() {
                CacheStatus::Hit
            } else {
                CacheStatus::Miss
            },
        })
    }

    /// One source-of-truth read on behalf of lookups, with the configured
    /// artificial delay in front of it.
    async fn load<'a, T, Fut>(
        &'a self,
        query: impl FnOnce(&'a Store) -> Fut,
    ) -> Result<T, StoreError>
    where
        Fut: Future<Output = Result<T, StoreError>>,
    {
        CacheStats::bump(&self.stats.upstream_fetches);
        if !self.source_delay.is_zero() {
            tokio::time::sleep(self.source_delay).await;
        }
        query(&self.store).await
    }

    fn count_misses(&self, status: CacheStatus, n: u64) {
        CacheStats::add(&self.stats.misses, n);
        if status == CacheStatus::Bypass {
            CacheStats::add(&self.stats.bypasses, n);
        }
    }

    /// Writes freshly read items to Redis in one pipeline. Keys with pending
    /// invalidations are skipped: Redis may still hold an older value for them
    /// that the pending delete must remove first. Failures only cost a future miss.
    async fn fill(&self, mut entries: Vec<(CacheKey, Vec<u8>)>) {
        entries.retain(|(key, _)| !self.pending.blocks(key));
        let n = entries.len() as u64;
        match self.l2.fill_many(entries, Overwrite::Always).await {
            Ok(_) => CacheStats::add(&self.stats.fills, n),
            Err(failure) => tracing::debug!(error = %failure, "cache fill failed"),
        }
    }

    fn note_corrupt(&self, key: &CacheKey, err: &cache::DecodeError) {
        CacheStats::bump(&self.stats.corrupt);
        tracing::warn!(%key, error = %err, "undecodable cached value; treating it as a miss");
    }

    async fn forget_corrupt(&self, key: &CacheKey) {
        let _ = self.l2.delete(std::slice::from_ref(key)).await;
    }

    // ---- writes ------------------------------------------------------------

    pub async fn create(&self, new: NewItem) -> Result<Item, WriteError> {
        let this = self.clone();
        self.detached(async move {
            let item = this.store.insert(&new).await?;
            // A create invalidates too: a value for this id may still be
            // cached from before a delete whose invalidation was deferred.
            this.invalidate_after_write(&item.id).await;
            Ok(item)
        })
        .await
    }

    pub async fn update(
        &self,
        id: &ItemId,
        patch: &ItemPatch,
        expected: Option<Version>,
    ) -> Result<Item, WriteError> {
        let (this, id, patch) = (self.clone(), id.clone(), patch.clone());
        self.detached(async move {
            let item = this.store.update(&id, &patch, expected).await?;
            this.invalidate_after_write(&id).await;
            Ok(item)
        })
        .await
    }

    pub async fn delete(&self, id: &ItemId, expected: Option<Version>) -> Result<(), WriteError> {
        let (this, id) = (self.clone(), id.clone());
        self.detached(async move {
            this.store.delete(&id, expected).await?;
            this.invalidate_after_write(&id).await;
            Ok(())
        })
        .await
    }

    /// Runs a write to completion even if the caller goes away. Axum drops a
    /// handler whose client hung up; if that happened between the commit and
    /// the cache delete, the committed value would stay hidden behind the old
    /// cached one until the TTL. Shutdown waits for these tasks
    /// ([`Catalog::finish_writes`]).
    async fn detached<T: Send + 'static>(
        &self,
        write: impl Future<Output = T> + Send + 'static,
    ) -> T {
        match self.writes.spawn(write).await {
            Ok(done) => done,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(err) => unreachable!("write tasks are never aborted: {err}"),
        }
    }

    /// Waits, up to `limit`, for writes still running after their callers left.
    pub async fn finish_writes(&self, limit: Duration) -> bool {
        self.writes.close();
        tokio::time::timeout(limit, self.writes.wait())
            .await
            .is_ok()
    }

    /// Steps 2 and 3 of the write path (see [`crate::cache`]).
    async fn invalidate_after_write(&self, id: &ItemId) {
        let key = self.prefix.key(id);
        if let Err(failure) = self.l2.delete(std::slice::from_ref(&key)).await {
            log_deferred(&failure, key.as_str());
            self.pending.add_key(key.clone());
        }
        self.publish(Some(&key), None).await;
    }

    // ---- invalidation ------------------------------------------------------

    /// Deletes `key` and/or every key matching `pattern` in Redis, then tells
    /// the other instances.
    pub async fn invalidate(
        &self,
        key: Option<CacheKey>,
        pattern: Option<KeyPattern>,
    ) -> Invalidated {
        let this = self.clone();
        self.detached(async move {
            let outcome = this.apply_to_redis(key.as_ref(), pattern.as_ref()).await;
            this.publish(key.as_ref(), pattern.as_ref()).await;
            outcome
        })
        .await
    }

    async fn apply_to_redis(
        &self,
        key: Option<&CacheKey>,
        pattern: Option<&KeyPattern>,
    ) -> Invalidated {
        let mut outcome = Invalidated {
            deleted: 0,
            deferred: false,
        };
        if let Some(key) = key {
            match self.l2.delete(std::slice::from_ref(key)).await {
                Ok(n) => outcome.deleted += n,
                Err(failure) => {
                    log_deferred(&failure, key.as_str());
                    self.pending.add_key(key.clone());
                    outcome.deferred = true;
                }
            }
        }
        if let Some(pattern) = pattern {
            match self.l2.delete_matching(pattern).await {
                Ok(n) => outcome.deleted += n,
                Err(failure) => {
                    log_deferred(&failure, pattern.as_str());
                    self.pending.add_pattern(pattern.clone());
                    outcome.deferred = true;
                }
            }
        }
        outcome
    }

    async fn publish(&self, key: Option<&CacheKey>, pattern: Option<&KeyPattern>) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let message = InvalidationMessage::new(key, pattern, &self.instance, seq);
        match self
            .l2
            .publish(invalidation::CHANNEL, &message.to_json())
            .await
        {
            Ok(_) => CacheStats::bump(&self.stats.invalidations_published),
            Err(RedisFailure::Disconnected) => {
                tracing::debug!(seq, "invalidation not published: redis is down")
            }
            Err(failure) => {
                tracing::warn!(error = %failure, seq, "invalidation could not be published")
            }
        }
    }

    /// Handles a message from the invalidation channel. Our peers have already
    /// deleted the keys in Redis; other publishers (such as `redis-cli
    /// PUBLISH` or the original example) only announce, so their messages are
    /// applied here.
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
        let targets = match message.targets(&self.prefix) {
            Ok(targets) => targets,
            Err(err) => {
                tracing::warn!(error = %err, source = %message.source, "ignoring invalidation outside the cache namespace");
                return;
            }
        };
        if !message.is_from_peer() {
            self.apply_to_redis(targets.key.as_ref(), targets.pattern.as_ref())
                .await;
        }
        CacheStats::bump(&self.stats.invalidations_received);
        tracing::debug!(key = %message.key, pattern = %message.pattern, source = %message.source, "invalidation applied");
    }

    // ---- maintenance -------------------------------------------------------

    /// Loads up to `limit` of the most recently updated items into Redis,
    /// leaving values already cached untouched.
    pub async fn warm(&self, limit: u32) -> Result<Warmed, StoreError> {
        let items = self.store.recent(limit).await?;
        let mut warmed = Warmed {
            read: items.len(),
            loaded: 0,
            complete: true,
        };
        let entries: Vec<(CacheKey, Vec<u8>)> = items
            .iter()
            .map(|item| (self.prefix.key(&item.id), cache::encode(item)))
            .filter(|(key, _)| !self.pending.blocks(key))
            .collect();
        for chunk in entries.chunks(WARM_CHUNK) {
            match self.l2.fill_many(chunk.to_vec(), Overwrite::IfAbsent).await {
                Ok(written) => warmed.loaded += written,
                Err(failure) => {
                    tracing::warn!(error = %failure, "cache warming stopped: redis unavailable");
                    warmed.complete = false;
                    break;
                }
            }
        }
        CacheStats::add(&self.stats.fills, warmed.loaded as u64);
        Ok(warmed)
    }

    /// Keys under the cache prefix, counted with `SCAN` (never `DBSIZE`, which
    /// would count foreign keys too). Concurrent callers share one scan: a
    /// count that finished after a caller asked is as fresh as its own would
    /// be. `None` when Redis cannot be reached.
    pub async fn total_keys(&self) -> Option<u64> {
        let asked_at = Instant::now();
        let mut last = self.key_count.lock().await;
        if let Some((finished_at, count)) = *last
            && finished_at >= asked_at
        {
            return Some(count);
        }
        let everything = self.prefix.everything();
        let count = self.l2.count_matching(&everything);
        match tokio::time::timeout(KEY_COUNT_DEADLINE, count).await {
            Ok(Ok(count)) => {
                *last = Some((Instant::now(), count));
                Some(count)
            }
            Ok(Err(failure)) => {
                tracing::debug!(error = %failure, "cannot count cached keys");
                None
            }
            Err(_) => {
                tracing::warn!(
                    "counting cached keys took too long; is the Redis database very large or slow?"
                );
                None
            }
        }
    }
}

/// A known outage was already reported by the connection; only a surprise
/// (timeout, refused command) deserves a warning per invalidation.
fn log_deferred(failure: &RedisFailure, target: &str) {
    match failure {
        RedisFailure::Disconnected => {
            tracing::debug!(
                target,
                "redis is down; invalidation deferred until it is back"
            )
        }
        other => {
            tracing::warn!(target, error = %other, "invalidation deferred until redis answers")
        }
    }
}
