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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use moka::sync::Cache;

use super::entry::{Entry, Freshness, now_ms};
use super::key::{KeyPattern, KeyPrefix};
use crate::domain::ItemId;

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

pub struct NearCache {
    /// `None` when the near cache is off.
    entries: Option<Cache<ItemId, Arc<Slot>>>,
    prefix: KeyPrefix,
    /// Whether invalidations are known to reach us (subscriber subscribed).
    usable: AtomicBool,
    stripes: Box<[AtomicU64]>,
    global: AtomicU64,
    flushes: AtomicU64,
    hasher: std::hash::RandomState,
}

struct Slot {
    entry: Entry,
    /// The encoded size, for the byte bound.
    weight: u32,
}

/// A snapshot of the generations that concern one id, taken before the
/// lookup reads anything.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    stripe: usize,
    stripe_generation: u64,
    global_generation: u64,
}

impl NearCache {
    pub fn new(config: L1Config, prefix: KeyPrefix) -> Self {
        let entries = (config.capacity > 0).then(|| {
            // Every entry weighs at least max_bytes / capacity, so the one
            // weighted bound (max_bytes) also bounds the count (capacity).
            let floor = (config.max_bytes / config.capacity).max(1);
            Cache::builder()
                .max_capacity(config.max_bytes)
                .weigher(move |_: &ItemId, slot: &Arc<Slot>| {
                    u32::try_from(u64::from(slot.weight).max(floor)).unwrap_or(u32::MAX)
                })
                .time_to_live(config.ttl)
                .build()
        });
        Self {
            entries,
            prefix,
            usable: AtomicBool::new(false),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            global: AtomicU64::new(0),
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

    pub fn ticket(&self, id: &ItemId) -> Ticket {
        let stripe = self.stripe(id);
        Ticket {
            stripe,
            // Global first: an invalidation bumps before it evicts, so a
            // ticket taken after a bump can only see a cache without the entry.
            global_generation: self.global.load(Ordering::SeqCst),
            stripe_generation: self.stripes[stripe].load(Ordering::SeqCst),
        }
    }

    fn is_current(&self, ticket: &Ticket) -> bool {
        self.stripes[ticket.stripe].load(Ordering::SeqCst) == ticket.stripe_generation
            && self.global.load(Ordering::SeqCst) == ticket.global_generation
    }

    /// A fresh entry for `id`, if L1 is usable and holds one.
    pub fn get(&self, id: &ItemId) -> Option<Entry> {
        let entries = self.entries.as_ref()?;
        if !self.usable.load(Ordering::SeqCst) {
            return None;
        }
        let slot = entries.get(id)?;
        match slot.entry.freshness(now_ms()) {
            Freshness::Fresh { .. } => Some(slot.entry.clone()),
            Freshness::Stale => {
                entries.invalidate(id);
                None
            }
        }
    }

    /// Keeps `entry` (just read from Redis, or just written there) for `id`,
    /// unless an invalidation that concerns `id` happened since `ticket` was
    /// taken, or L1 holds a newer version already.
    pub fn insert(&self, id: &ItemId, entry: &Entry, size: usize, ticket: &Ticket) {
        let Some(entries) = &self.entries else {
            return;
        };
        if !self.usable.load(Ordering::SeqCst) || !self.is_current(ticket) {
            return;
        }
        if let (Some(held), Some(new)) = (entries.get(id), &entry.item)
            && held
                .entry
                .item
                .as_ref()
                .is_some_and(|old| old.version > new.version)
        {
            return;
        }
        let slot = Arc::new(Slot {
            entry: entry.clone(),
            weight: u32::try_from(size).unwrap_or(u32::MAX),
        });
        entries.insert(id.clone(), slot);
        // An invalidation that bumped after our check may have evicted before
        // our insert: look again, and undo.
        if !self.is_current(ticket) {
            entries.invalidate(id);
        }
    }

    /// Evicts `id`; fills in flight for it are dropped.
    pub fn invalidate(&self, id: &ItemId) {
        let stripe = self.stripe(id);
        self.stripes[stripe].fetch_add(1, Ordering::SeqCst);
        if let Some(entries) = &self.entries {
            entries.invalidate(id);
        }
    }

    /// Evicts every id whose key matches `pattern` (Redis glob semantics).
    pub fn invalidate_matching(&self, pattern: &KeyPattern) {
        self.global.fetch_add(1, Ordering::SeqCst);
        if let Some(entries) = &self.entries {
            for (id, _) in entries.iter() {
                if pattern.matches(&self.prefix.key(&id)) {
                    entries.invalidate(&*id);
                }
            }
        }
    }

    /// Evicts everything (an invalidation may have been missed).
    pub fn flush(&self) {
        self.global.fetch_add(1, Ordering::SeqCst);
        if let Some(entries) = &self.entries {
            entries.invalidate_all();
            self.flushes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Invalidations may no longer reach us: flush, and bypass L1 until
    /// [`NearCache::resume`].
    pub fn suspend(&self) {
        self.usable.store(false, Ordering::SeqCst);
        self.flush();
    }

    /// Invalidations reach us again. Lookups that started before cannot fill:
    /// what they read may predate an invalidation we missed.
    pub fn resume(&self) {
        self.global.fetch_add(1, Ordering::SeqCst);
        self.usable.store(true, Ordering::SeqCst);
    }

    /// Entries held (after pending evictions are processed).
    pub fn entry_count(&self) -> u64 {
        self.entries.as_ref().map_or(0, |entries| {
            entries.run_pending_tasks();
            entries.entry_count()
        })
    }

    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    fn stripe(&self, id: &ItemId) -> usize {
        let mut hasher = self.hasher.build_hasher();
        id.hash(&mut hasher);
        (std::hash::Hasher::finish(&hasher) as usize) % STRIPES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Item, Version};

    fn id(raw: &str) -> ItemId {
        ItemId::parse(raw).unwrap()
    }

    fn entry(raw: &str, version: i64) -> Entry {
        let now = now_ms();
        Entry {
            fetched_at: now,
            fresh_until: now + 60_000,
            item: Some(Item {
                id: id(raw),
                name: "n".into(),
                description: String::new(),
                price: 1.0,
                category: String::new(),
                stock: 0,
                created_at: time::OffsetDateTime::UNIX_EPOCH,
                updated_at: time::OffsetDateTime::UNIX_EPOCH,
                version: Version(version),
            }),
        }
    }

    fn near(capacity: u64, max_bytes: u64) -> NearCache {
        let config = L1Config {
            capacity,
            max_bytes,
            ttl: Duration::from_secs(60),
        };
        let cache = NearCache::new(config, KeyPrefix::parse("item:").unwrap());
        cache.resume();
        cache
    }

    fn version(cache: &NearCache, raw: &str) -> Option<i64> {
        cache
            .get(&id(raw))
            .and_then(|e| e.item)
            .map(|i| i.version.0)
    }

    #[test]
    fn an_invalidation_after_the_ticket_drops_the_fill() {
        let cache = near(100, 1 << 20);
        let ticket = cache.ticket(&id("1"));
        cache.invalidate(&id("1"));
        cache.insert(&id("1"), &entry("1", 1), 100, &ticket);
        assert_eq!(version(&cache, "1"), None);
        let ticket = cache.ticket(&id("1"));
        cache.insert(&id("1"), &entry("1", 1), 100, &ticket);
        assert_eq!(version(&cache, "1"), Some(1));
    }

    #[test]
    fn patterns_flushes_and_resumptions_drop_every_fill_in_flight() {
        let cache = near(100, 1 << 20);
        for change in [
            (|c: &NearCache| {
                c.invalidate_matching(&KeyPrefix::parse("item:").unwrap().everything())
            }) as fn(&NearCache),
            |c| c.flush(),
            |c| c.resume(),
        ] {
            let ticket = cache.ticket(&id("2"));
            change(&cache);
            cache.insert(&id("2"), &entry("2", 1), 100, &ticket);
            assert_eq!(version(&cache, "2"), None);
        }
    }

    #[test]
    fn patterns_evict_with_redis_glob_semantics() {
        let cache = near(100, 1 << 20);
        for raw in ["10", "11", "2"] {
            let ticket = cache.ticket(&id(raw));
            cache.insert(&id(raw), &entry(raw, 1), 100, &ticket);
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
        cache.insert(&id("1"), &entry("1", 3), 100, &ticket);
        cache.insert(&id("1"), &entry("1", 2), 100, &ticket);
        assert_eq!(version(&cache, "1"), Some(3));
    }

    #[test]
    fn suspended_means_empty_and_bypassed_until_resumed() {
        let cache = near(100, 1 << 20);
        let ticket = cache.ticket(&id("1"));
        cache.insert(&id("1"), &entry("1", 1), 100, &ticket);
        cache.suspend();
        assert_eq!(version(&cache, "1"), None);
        let ticket = cache.ticket(&id("1"));
        cache.insert(&id("1"), &entry("1", 1), 100, &ticket);
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
                cache.insert(&id(&raw), &entry(&raw, 1), 1_000, &ticket);
            }
        }
        assert!(by_count.entry_count() <= 10, "{}", by_count.entry_count());
        assert!(by_bytes.entry_count() <= 10, "{}", by_bytes.entry_count());
    }

    #[test]
    fn off_when_capacity_is_zero() {
        let cache = near(0, 1 << 20);
        assert!(!cache.is_usable());
        let ticket = cache.ticket(&id("1"));
        cache.insert(&id("1"), &entry("1", 1), 100, &ticket);
        assert_eq!(version(&cache, "1"), None);
    }
}
