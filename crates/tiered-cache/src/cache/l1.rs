//! The near cache (L1): entries from Redis kept in this process, bounded by
//! count and by bytes, each for at most `L1_TTL` and never past the entry's
//! own freshness.
//!
//! An L1 entry is only as good as the invalidations that reach it, so:
//! - L1 is *usable* only while the invalidation subscriber is subscribed;
//!   when it is not, L1 is flushed and bypassed, and entries only come back
//!   after it has subscribed again ([`NearCache::suspend`],
//!   [`NearCache::resume`]);
//! - an invalidation beats a fill in flight. Every lookup takes a [`Ticket`]
//!   before it reads anything; every invalidation bumps a generation before
//!   it evicts. A fill whose ticket is no longer current when it inserts (or
//!   right after) is dropped. Generations are striped by id (bounded memory;
//!   a false positive only costs one insert), and patterns, flushes and
//!   resumptions bump a global one.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::time::Duration;

use moka::sync::Cache;

use super::cacheable::Cacheable;
use super::entry::{Entry, Freshness, now_ms};
use super::key::{KeyPattern, KeyPrefix};

/// Generation stripes. More stripes, fewer fills dropped because another id
/// of the same stripe was invalidated meanwhile.
const STRIPES: usize = 4096;

/// Sizing of the near cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L1Config {
    /// Most entries; 0 turns the near cache off.
    pub capacity: u64,
    /// Most bytes of cached JSON (approximate: the encoded entries).
    pub max_bytes: u64,
    /// Longest an entry is kept (capped at the cache TTL by the config).
    pub ttl: Duration,
}

pub struct NearCache<V: Cacheable> {
    /// `None` when the near cache is off.
    entries: Option<Cache<V::Id, Arc<Slot<V>>>>,
    prefix: KeyPrefix,
    /// Whether invalidations are known to reach us: the subscriber is
    /// subscribed and the shared Redis connection is up. Written under
    /// `conditions`, read lock-free.
    usable: AtomicBool,
    conditions: std::sync::Mutex<Conditions>,
    stripes: Box<[AtomicU64]>,
    /// Bumped by pattern invalidations.
    global: AtomicU64,
    /// Bumped by flushes, suspensions and resumptions: a slot from an older
    /// epoch is never served, whatever the cache's own eviction is up to.
    epoch: AtomicU64,
    flushes: AtomicU64,
    hasher: std::hash::RandomState,
}

#[derive(Debug, Clone, Copy)]
struct Conditions {
    subscribed: bool,
    /// The shared connection: when it breaks, Redis is usually restarting,
    /// frozen or cut off, and the subscription, on its own connection, may
    /// not have noticed yet.
    linked: bool,
}

struct Slot<V> {
    entry: Entry<V>,
    /// The encoded size, for the byte bound.
    weight: u32,
    /// The generations its filler's ticket saw. A slot whose stripe has been
    /// bumped since, or from an older epoch, is not served: this closes the
    /// instant between an insert and its re-check.
    stripe_generation: u64,
    epoch: u64,
    /// Set by the first hit that starts an early refresh of this slot, so
    /// that later hits on the same old slot do not start another.
    refresh_claimed: AtomicBool,
}

/// A snapshot of the generations that concern one id, taken before the
/// lookup (or load) reads anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    stripe: usize,
    stripe_generation: u64,
    global_generation: u64,
    epoch: u64,
}

impl<V: Cacheable> NearCache<V> {
    pub fn new(config: L1Config, prefix: KeyPrefix) -> Self {
        let entries = (config.capacity > 0).then(|| {
            // Every entry weighs at least max_bytes / capacity, so the one
            // weighted bound (max_bytes) also bounds the count (capacity);
            // the configuration keeps that floor within a u32 weight.
            let floor = (config.max_bytes / config.capacity).max(1);
            Cache::builder()
                .max_capacity(config.max_bytes)
                .weigher(move |_: &V::Id, slot: &Arc<Slot<V>>| {
                    u32::try_from(u64::from(slot.weight).max(floor)).unwrap_or(u32::MAX)
                })
                .time_to_live(config.ttl)
                .build()
        });
        Self {
            entries,
            prefix,
            usable: AtomicBool::new(false),
            conditions: std::sync::Mutex::new(Conditions {
                subscribed: false,
                linked: true,
            }),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            global: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            hasher: std::hash::RandomState::new(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.entries.is_some()
    }

    /// Enabled, and invalidations are reaching us.
    pub fn is_usable(&self) -> bool {
        self.entries.is_some() && self.usable.load(Ordering::SeqCst)
    }

    pub fn ticket(&self, id: &V::Id) -> Ticket {
        let stripe = self.stripe(id);
        Ticket {
            stripe,
            epoch: self.epoch.load(Ordering::SeqCst),
            global_generation: self.global.load(Ordering::SeqCst),
            stripe_generation: self.stripes[stripe].load(Ordering::SeqCst),
        }
    }

    fn is_current(&self, ticket: &Ticket) -> bool {
        self.stripes[ticket.stripe].load(Ordering::SeqCst) == ticket.stripe_generation
            && self.global.load(Ordering::SeqCst) == ticket.global_generation
            && self.epoch.load(Ordering::SeqCst) == ticket.epoch
    }

    /// A fresh entry for `id`, if L1 is usable and holds one.
    pub fn get(&self, id: &V::Id) -> Option<Entry<V>> {
        let entries = self.entries.as_ref()?;
        if !self.usable.load(Ordering::SeqCst) {
            return None;
        }
        let slot = entries.get(id)?;
        let valid = slot.epoch == self.epoch.load(Ordering::SeqCst)
            && slot.stripe_generation == self.stripes[self.stripe(id)].load(Ordering::SeqCst);
        if !valid {
            entries.invalidate(id);
            return None;
        }
        match slot.entry.freshness(now_ms()) {
            Freshness::Fresh { .. } => Some(slot.entry.clone()),
            Freshness::Stale => {
                entries.invalidate(id);
                None
            }
        }
    }

    /// Whether the caller is the first to start an early refresh of the slot
    /// now held for `id` (false if there is none).
    pub fn claim_refresh(&self, id: &V::Id) -> bool {
        self.entries
            .as_ref()
            .and_then(|entries| entries.get(id))
            .is_some_and(|slot| !slot.refresh_claimed.swap(true, Ordering::SeqCst))
    }

    /// Keeps `entry` (just read from Redis, or just written there) for `id`,
    /// unless an invalidation that concerns `id` happened since any of the
    /// `tickets` was taken (the lookup's own, and that of the load it joined),
    /// or L1 holds a newer version already.
    pub fn insert(&self, id: &V::Id, entry: &Entry<V>, size: usize, tickets: &[Ticket]) {
        let Some(entries) = &self.entries else {
            return;
        };
        let Some(oldest) = tickets.first() else {
            return;
        };
        if !self.usable.load(Ordering::SeqCst) || !tickets.iter().all(|t| self.is_current(t)) {
            return;
        }
        if let (Some(held), Some(new)) = (entries.get(id), &entry.value)
            && held
                .entry
                .value
                .as_ref()
                .is_some_and(|old| old.version() > new.version())
        {
            return;
        }
        let slot = Arc::new(Slot {
            entry: entry.clone(),
            weight: u32::try_from(size).unwrap_or(u32::MAX),
            stripe_generation: oldest.stripe_generation,
            epoch: oldest.epoch,
            refresh_claimed: AtomicBool::new(false),
        });
        entries.insert(id.clone(), slot);
        // An invalidation that bumped after our check may have evicted before
        // our insert: look again, and undo. The fence orders our insert before
        // the re-read, as the invalidation's fence orders its bump before its
        // eviction.
        fence(Ordering::SeqCst);
        if !tickets.iter().all(|t| self.is_current(t)) {
            entries.invalidate(id);
        }
    }

    /// Evicts `id`; fills in flight for it are dropped.
    pub fn invalidate(&self, id: &V::Id) {
        let stripe = self.stripe(id);
        self.stripes[stripe].fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if let Some(entries) = &self.entries {
            entries.invalidate(id);
        }
    }

    /// Evicts every id whose key matches `pattern` (Redis glob semantics).
    pub fn invalidate_matching(&self, pattern: &KeyPattern) {
        if *pattern == self.prefix.everything() {
            self.flush();
            return;
        }
        self.global.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if let Some(entries) = &self.entries {
            for (id, _) in entries.iter() {
                if pattern.matches(&self.prefix.key(&*id)) {
                    entries.invalidate(&*id);
                }
            }
        }
    }

    /// Evicts everything (an invalidation may have been missed).
    pub fn flush(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if let Some(entries) = &self.entries {
            entries.invalidate_all();
            self.flushes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Invalidations may no longer reach us (the subscription is lost):
    /// flush, and bypass L1 until [`NearCache::resume`].
    pub fn suspend(&self) {
        self.set(|c| c.subscribed = false);
    }

    /// Subscribed again: L1 is used again once the shared connection is up
    /// too. Lookups that started before cannot fill: what they read may
    /// predate an invalidation we missed.
    pub fn resume(&self) {
        self.set(|c| c.subscribed = true);
    }

    /// The shared Redis connection went down (`false`) or came back.
    pub fn set_linked(&self, linked: bool) {
        self.set(|c| c.linked = linked);
    }

    /// Only the change from usable to not flushes (and counts); every change
    /// starts a new epoch.
    fn set(&self, change: impl FnOnce(&mut Conditions)) {
        let mut conditions = self.conditions.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut conditions);
        let usable = conditions.subscribed && conditions.linked;
        let was = self.usable.swap(usable, Ordering::SeqCst);
        if was && !usable {
            self.flush();
        } else {
            self.epoch.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Entries held. Processes the cache's pending evictions first, which
    /// takes a lock inside moka: call it off the async runtime.
    pub fn entry_count(&self) -> u64 {
        self.entries.as_ref().map_or(0, |entries| {
            entries.run_pending_tasks();
            entries.entry_count()
        })
    }

    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    fn stripe(&self, id: &V::Id) -> usize {
        let mut hasher = self.hasher.build_hasher();
        id.hash(&mut hasher);
        (std::hash::Hasher::finish(&hasher) as usize) % STRIPES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{Value, id};

    fn entry(raw: &str, version: i64) -> Entry<Value> {
        let now = now_ms();
        Entry {
            fetched_at: now,
            fresh_until: now + 60_000,
            value: Some(Value {
                id: id(raw),
                version,
            }),
        }
    }

    fn near(capacity: u64, max_bytes: u64) -> NearCache<Value> {
        let config = L1Config {
            capacity,
            max_bytes,
            ttl: Duration::from_secs(60),
        };
        let cache = NearCache::new(config, KeyPrefix::parse("item:").unwrap());
        cache.resume();
        cache
    }

    fn version(cache: &NearCache<Value>, raw: &str) -> Option<i64> {
        cache.get(&id(raw)).and_then(|e| e.value).map(|v| v.version)
    }

    #[test]
    fn an_invalidation_after_the_ticket_drops_the_fill() {
        let cache = near(100, 1 << 20);
        let ticket = cache.ticket(&id("1"));
        cache.invalidate(&id("1"));
        cache.insert(&id("1"), &entry("1", 1), 100, std::slice::from_ref(&ticket));
        assert_eq!(version(&cache, "1"), None);
        let ticket = cache.ticket(&id("1"));
        cache.insert(&id("1"), &entry("1", 1), 100, std::slice::from_ref(&ticket));
        assert_eq!(version(&cache, "1"), Some(1));
    }

    #[test]
    fn patterns_flushes_and_resumptions_drop_every_fill_in_flight() {
        let cache = near(100, 1 << 20);
        for change in [
            (|c: &NearCache<Value>| {
                c.invalidate_matching(&KeyPrefix::parse("item:").unwrap().everything())
            }) as fn(&NearCache<Value>),
            |c| c.flush(),
            |c| c.resume(),
        ] {
            let ticket = cache.ticket(&id("2"));
            change(&cache);
            cache.insert(&id("2"), &entry("2", 1), 100, std::slice::from_ref(&ticket));
            assert_eq!(version(&cache, "2"), None);
        }
    }

    #[test]
    fn patterns_evict_with_redis_glob_semantics() {
        let cache = near(100, 1 << 20);
        for raw in ["10", "11", "2"] {
            let ticket = cache.ticket(&id(raw));
            cache.insert(&id(raw), &entry(raw, 1), 100, std::slice::from_ref(&ticket));
        }
        let pattern = KeyPrefix::parse("item:")
            .unwrap()
            .parse_pattern("item:1[0-9]")
            .unwrap();
        cache.invalidate_matching(&pattern);
        assert_eq!(version(&cache, "10"), None);
        assert_eq!(version(&cache, "11"), None);
        assert_eq!(version(&cache, "2"), Some(1));
    }

    #[test]
    fn an_older_version_never_replaces_a_newer_one() {
        let cache = near(100, 1 << 20);
        let ticket = cache.ticket(&id("1"));
        cache.insert(&id("1"), &entry("1", 3), 100, std::slice::from_ref(&ticket));
        cache.insert(&id("1"), &entry("1", 2), 100, std::slice::from_ref(&ticket));
        assert_eq!(version(&cache, "1"), Some(3));
    }

    #[test]
    fn suspended_means_empty_and_bypassed_until_resumed() {
        let cache = near(100, 1 << 20);
        let ticket = cache.ticket(&id("1"));
        cache.insert(&id("1"), &entry("1", 1), 100, std::slice::from_ref(&ticket));
        cache.suspend();
        assert_eq!(version(&cache, "1"), None);
        let ticket = cache.ticket(&id("1"));
        cache.insert(&id("1"), &entry("1", 1), 100, std::slice::from_ref(&ticket));
        assert_eq!(cache.entry_count(), 0, "no fills while suspended");
        cache.resume();
        assert_eq!(version(&cache, "1"), None, "the flush was for good");
        assert_eq!(cache.flushes(), 1);
    }

    #[test]
    fn bounded_by_count_and_by_bytes() {
        let by_count = near(10, 1 << 30);
        let by_bytes = near(1_000_000, 10_000);
        for n in 0..1000 {
            let raw = n.to_string();
            for cache in [&by_count, &by_bytes] {
                let ticket = cache.ticket(&id(&raw));
                cache.insert(
                    &id(&raw),
                    &entry(&raw, 1),
                    1_000,
                    std::slice::from_ref(&ticket),
                );
            }
        }
        assert!(by_count.entry_count() <= 10, "{}", by_count.entry_count());
        assert!(by_bytes.entry_count() <= 10, "{}", by_bytes.entry_count());
    }

    #[test]
    fn a_broken_connection_suspends_until_it_is_back() {
        let cache = near(100, 1 << 20);
        let ticket = cache.ticket(&id("1"));
        cache.insert(&id("1"), &entry("1", 1), 100, std::slice::from_ref(&ticket));
        cache.set_linked(false);
        assert!(!cache.is_usable());
        assert_eq!(version(&cache, "1"), None);
        cache.set_linked(true);
        assert!(cache.is_usable(), "still subscribed");
        assert_eq!(version(&cache, "1"), None, "flushed");
        cache.suspend();
        cache.set_linked(false);
        cache.resume();
        assert!(!cache.is_usable(), "needs both");
        assert_eq!(cache.flushes(), 2);
    }

    #[test]
    fn off_when_capacity_is_zero() {
        let cache = near(0, 1 << 20);
        assert!(!cache.is_usable());
        let ticket = cache.ticket(&id("1"));
        cache.insert(&id("1"), &entry("1", 1), 100, std::slice::from_ref(&ticket));
        assert_eq!(version(&cache, "1"), None);
    }
}
