//! The engine's entry point, [`Catalog`]: reads of a source of truth's
//! values through the two tiers, and writes that keep them honest. Its user
//! (an HTTP service, say) calls this; it calls the source ([`Source`]) and
//! Redis.
//!
//! A lookup is answered, in order of preference:
//! - from a **fresh** entry, in the near cache or in Redis (`HIT`), an
//!   absence included,
//!   refreshing it in the background when it is close to expiring;
//! - by a **load** (`MISS`): concurrent lookups of one id in this process
//!   share one (`flight`), instances share one through a Redis lease, and the
//!   source of truth is read once for all ids of a batch (`load`);
//! - without Redis (`BYPASS`) when it is down, slow or has a deferred delete;
//! - from a **stale** entry (`STALE`, with its age) when the source of truth
//!   fails, within the stale window of its freshness
//!   ([`CacheConfig::stale_if_error`]).
//!
//! Writes ([`write`]) commit, delete the key and its lease (voiding loads in
//! progress), publish the invalidation, then answer. `docs/cache-design.md`
//! walks through the races this closes.

mod exposition;
mod failsafe;
mod flight;
mod hooks;
mod load;
mod maintenance;
mod policy;
mod receive;
mod refresh;
mod settings;
mod source;
mod status;
mod write;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::breaker::{Breaker, CircuitState};
use crate::cache::{
    self, CacheKey, CacheStats, CacheStatus, DeferredInvalidations, Entry, Freshness, KeyPrefix,
    LookupResult, NearCache, RedisCache, RedisFailure, StatsSnapshot, Ticket, Tier, Totals,
};
use crate::invalidation::{
    LagCounts, LagHistogram, LagSnapshot, Outbox, Publisher, Receiver, SenderId,
};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::since_reset::{Counted, SinceReset};
use crate::telemetry::spans;
use failsafe::Failsafe;
use flight::Flights;
#[cfg(feature = "test-hooks")]
pub use hooks::FillHook;
use hooks::Hooks;
use load::LoadFor;
pub(crate) use load::Loaded;
pub use load::SourceError;
use maintenance::KeyCount;
pub use maintenance::Warmed;
pub(crate) use policy::Policy;
use refresh::Refreshing;
pub use settings::CacheConfig;
pub use source::{Source, SourceFailure, WriteFailure};
pub use status::{NearCacheState, Status};

/// Everything this instance counts, as `/metrics` exports it (since
/// start) and `/stats` shows it (since the last reset: see
/// [`crate::telemetry::since_reset`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub cache: Totals,
    pub l1_flushes: u64,
    pub lag: LagCounts,
}

impl Counted for Counts {
    fn minus(&self, earlier: &Self) -> Self {
        Self {
            cache: self.cache.minus(&earlier.cache),
            l1_flushes: self.l1_flushes.minus(&earlier.l1_flushes),
            lag: self.lag.minus(&earlier.lag),
        }
    }
}

/// The counted part of `/stats`: since the last reset.
#[derive(Debug, Clone)]
pub struct Stats {
    pub counters: StatsSnapshot,
    pub l1_flushes: u64,
    pub invalidation_lag: LagSnapshot,
}

/// Cheap to clone: every field is a handle.
pub struct Catalog<S: Source> {
    source: S,
    /// Opened by repeated failures to reach the database (PostgreSQL): while
    /// open, reads and writes fail at once instead of each waiting out
    /// `SOURCE_TIMEOUT` on a database known to be down.
    source_breaker: Arc<Breaker>,
    /// This instance's metrics registry (shared with HTTP and Redis).
    metrics: Arc<Metrics>,
    /// This instance's near cache; shared with the subscriber, which
    /// suspends it while invalidations may be lost.
    l1: Arc<NearCache<S::Value>>,
    l2: RedisCache,
    prefix: KeyPrefix,
    policy: Arc<Policy>,
    deferred: Arc<DeferredInvalidations>,
    stats: Arc<CacheStats>,
    flights: Arc<Flights<S::Id, load::Outcome<S::Value>>>,
    failsafe: Arc<Failsafe<S::Id>>,
    refreshing: Arc<Refreshing<S::Id>>,
    hooks: Arc<Hooks<S::Id>>,
    instance: Arc<str>,
    /// This instance's voice on the invalidation channel.
    publisher: Publisher,
    /// The publisher's task end, until [`crate::Engine::start`] starts it.
    outbox: Arc<std::sync::Mutex<Option<Outbox>>>,
    /// What an invalidation received means (it drives this catalog through
    /// [`crate::invalidation::Caches`]).
    receiver: Arc<Receiver>,
    /// What `/stats` shows is counted from: the last `/stats/reset`.
    since_reset: Arc<SinceReset<Counts>>,
    /// Publish-to-apply lag of the invalidations received (the receiver
    /// records it).
    lag: Arc<LagHistogram>,
    /// Write paths in flight, spawned so they finish even if the request is
    /// dropped (see [`Catalog::detached`]).
    writes: TaskTracker,
    /// The last namespace key count (`None`: it failed) and when it finished. The async mutex
    /// makes concurrent `/stats` calls share one `SCAN`.
    key_count: Arc<tokio::sync::Mutex<Option<KeyCount>>>,
}

/// Counts how missed lookups end, exactly once each: when the answer is
/// known, or, for a lookup abandoned on the way (its client hung up), as the
/// answer it was heading for.
struct Endings<'a> {
    stats: &'a CacheStats,
    open: Vec<Option<LookupResult>>,
}

impl<'a> Endings<'a> {
    fn new(stats: &'a CacheStats, heading_for: Vec<LookupResult>) -> Self {
        Self {
            stats,
            open: heading_for.into_iter().map(Some).collect(),
        }
    }

    fn end(&mut self, index: usize, result: LookupResult) {
        if self.open.get_mut(index).and_then(Option::take).is_some() {
            self.stats.ended(result);
        }
    }
}

impl Drop for Endings<'_> {
    fn drop(&mut self) {
        for result in self.open.drain(..).flatten() {
            self.stats.ended(result);
        }
    }
}

/// The answer to a single lookup.
#[derive(Debug)]
pub struct Lookup<V> {
    pub value: Option<V>,
    pub status: CacheStatus,
    /// For hits: which cache answered.
    pub tier: Option<Tier>,
    /// For `STALE` answers: how old the value is.
    pub age: Option<Duration>,
}

impl<V> Lookup<V> {
    fn hit(value: Option<V>, tier: Tier) -> Self {
        Lookup {
            value,
            status: CacheStatus::Hit,
            tier: Some(tier),
            age: None,
        }
    }
}

/// The answer to a batch lookup of distinct ids.
#[derive(Debug)]
pub struct BatchLookup<I, V> {
    /// Found values, in the order of the ids asked for.
    pub values: Vec<V>,
    /// Ids with no value, in the order asked for.
    pub missing: Vec<I>,
    /// Ids answered from a fresh cache entry.
    pub hits: usize,
    pub misses: usize,
    /// `BYPASS` if Redis could not be used, `STALE` if a stale value was
    /// served, `HIT` when every id hit, else `MISS`.
    pub status: CacheStatus,
}

impl<I: Clone, V> BatchLookup<I, V> {
    /// The batch's view of its ids' answers (in the order of `ids`).
    fn new(ids: &[I], answers: Vec<Lookup<V>>) -> Self {
        let hits = answers
            .iter()
            .filter(|a| a.status == CacheStatus::Hit)
            .count();
        let any = |status: CacheStatus| answers.iter().any(|a| a.status == status);
        let status = if any(CacheStatus::Bypass) {
            CacheStatus::Bypass
        } else if any(CacheStatus::Stale) {
            CacheStatus::Stale
        } else if hits == ids.len() {
            CacheStatus::Hit
        } else {
            CacheStatus::Miss
        };
        let mut values = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for (id, answer) in ids.iter().zip(answers) {
            match answer.value {
                Some(value) => values.push(value),
                None => missing.push(id.clone()),
            }
        }
        BatchLookup {
            values,
            missing,
            hits,
            misses: ids.len() - hits,
            status,
        }
    }
}

/// Some ids could be answered neither by the cache nor by the source of truth.
#[derive(Debug, thiserror::Error)]
#[error("{cause}")]
pub struct LookupError<I> {
    pub ids: Vec<I>,
    pub cause: SourceError,
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

/// What the caches hold for one id.
enum Cached<V> {
    /// A fresh entry in the near cache.
    Near(Entry<V>),
    /// With its encoded size (for the near cache's byte bound).
    Fresh(Entry<V>, usize),
    /// Past its freshness: served only if the source of truth fails.
    Stale(Entry<V>),
    Missing,
    /// Redis was not asked (or did not answer).
    Bypassed,
}

// Written out: a derived `Clone` would ask `S::Id` and `S::Value` to be
// `Clone` through `Arc`s that are cloned whatever they hold.
impl<S: Source> Clone for Catalog<S> {
    fn clone(&self) -> Self {
        Self {
            source: self.source.clone(),
            source_breaker: self.source_breaker.clone(),
            metrics: self.metrics.clone(),
            l1: self.l1.clone(),
            l2: self.l2.clone(),
            prefix: self.prefix.clone(),
            policy: self.policy.clone(),
            deferred: self.deferred.clone(),
            stats: self.stats.clone(),
            flights: self.flights.clone(),
            failsafe: self.failsafe.clone(),
            refreshing: self.refreshing.clone(),
            hooks: self.hooks.clone(),
            instance: self.instance.clone(),
            publisher: self.publisher.clone(),
            outbox: self.outbox.clone(),
            receiver: self.receiver.clone(),
            since_reset: self.since_reset.clone(),
            lag: self.lag.clone(),
            writes: self.writes.clone(),
            key_count: self.key_count.clone(),
        }
    }
}

impl<S: Source> Catalog<S> {
    pub(crate) fn new(
        source: S,
        l2: RedisCache,
        cache: &CacheConfig,
        instance: &str,
        metrics: Arc<Metrics>,
    ) -> Self {
        let policy = Policy::from_config(cache);
        let sender = SenderId {
            id: instance.into(),
            started: cache::now_ms(),
        };
        let (publisher, outbox) =
            crate::invalidation::publisher_channel(sender.clone(), cache.heartbeat);
        let breaker_failures = if source.can_be_down() {
            cache.source_breaker_failures
        } else {
            0
        };
        let lag = Arc::new(LagHistogram::default());
        let receiver = Receiver::new(sender, cache.prefix.clone(), cache.heartbeat, lag.clone());
        Self {
            source_breaker: Arc::new(Breaker::new(
                "source of truth",
                breaker_failures,
                cache.source_breaker_cooldown,
            )),
            source,
            metrics,
            l1: Arc::new(NearCache::new(cache.l1, cache.prefix.clone())),
            l2,
            prefix: cache.prefix.clone(),
            flights: Arc::new(Flights::new(policy.coalescing)),
            failsafe: Arc::new(Failsafe::new(policy.failsafe_throttle)),
            policy: Arc::new(policy),
            deferred: Arc::default(),
            stats: Arc::default(),
            refreshing: Arc::default(),
            hooks: Arc::default(),
            instance: instance.into(),
            publisher,
            outbox: Arc::new(std::sync::Mutex::new(Some(outbox))),
            receiver: Arc::new(receiver),
            since_reset: Arc::default(),
            lag,
            writes: TaskTracker::new(),
            key_count: Arc::default(),
        }
    }

    pub fn source(&self) -> &S {
        &self.source
    }

    /// The database's circuit breaker (see [`Catalog::source_guarded`]).
    pub(crate) fn source_circuit(&self) -> CircuitState {
        self.source_breaker.state()
    }

    /// Runs `call` on the database unless its breaker is open (then the
    /// error `down` makes, at once); `outage` tells a failure to reach it
    /// from any other outcome.
    async fn source_guarded<T, E>(
        &self,
        call: impl Future<Output = Result<T, E>>,
        outage: impl Fn(&Result<T, E>) -> bool,
        down: impl FnOnce() -> E,
    ) -> Result<T, E> {
        let Some(attempt) = self.source_breaker.allow() else {
            self.metrics.source_skipped();
            return Err(down());
        };
        let result = call.await;
        if outage(&result) {
            attempt.failed();
        } else {
            attempt.succeeded();
        }
        result
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The near cache, for tests that look into it.
    #[cfg(feature = "test-hooks")]
    pub fn l1(&self) -> &NearCache<S::Value> {
        &self.l1
    }

    #[cfg(not(feature = "test-hooks"))]
    pub(crate) fn l1(&self) -> &NearCache<S::Value> {
        &self.l1
    }

    pub(crate) fn l2(&self) -> &RedisCache {
        &self.l2
    }

    pub fn prefix(&self) -> &KeyPrefix {
        &self.prefix
    }

    pub(crate) fn deferred(&self) -> &Arc<DeferredInvalidations> {
        &self.deferred
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The task that sends this instance's invalidations; `None` once taken.
    pub(crate) fn take_outbox(&self) -> Option<Outbox> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Everything counted since start, for `/metrics`.
    pub fn totals(&self) -> Counts {
        Counts {
            cache: self.stats.totals(),
            l1_flushes: self.l1.flushes(),
            lag: self.lag.counts(),
        }
    }

    /// What `/stats` shows: everything counted since the last
    /// `/stats/reset`.
    pub fn stats(&self) -> Stats {
        let (counts, since) = self.since_reset.since(&self.totals());
        Stats {
            counters: counts.cache.report(since),
            l1_flushes: counts.l1_flushes,
            invalidation_lag: counts.lag.report(self.lag.max()),
        }
    }

    /// Starts `/stats` afresh (`/metrics` counters keep growing).
    pub fn reset_stats(&self) {
        self.since_reset.reset(self.totals());
        self.lag.restart_max();
    }

    /// Test hook: runs before each fill, after the source-of-truth read.
    #[cfg(feature = "test-hooks")]
    pub fn set_before_fill_hook(&self, hook: Option<FillHook<S::Id>>) {
        self.hooks.set_before_fill(hook);
    }

    /// Test hook: runs before a lookup keeps what it read in the near cache.
    #[cfg(feature = "test-hooks")]
    pub fn set_before_l1_fill_hook(&self, hook: Option<FillHook<S::Id>>) {
        self.hooks.set_before_l1_fill(hook);
    }

    // ---- reads -------------------------------------------------------------

    /// Looks `id` up: a lookup of one id (see `Catalog::lookup`).
    pub async fn get(&self, id: &S::Id) -> Result<Lookup<S::Value>, LookupError<S::Id>> {
        let span = tracing::info_span!(
            "cache lookup",
            cache.id = %id,
            cache.status = tracing::field::Empty,
            cache.tier = tracing::field::Empty,
        );
        let lookup = self
            .lookup(std::slice::from_ref(id))
            .instrument(span.clone())
            .await
            .and_then(|mut answers| {
                answers.pop().ok_or_else(|| LookupError {
                    ids: vec![id.clone()],
                    cause: SourceError::failed("no answer for the id"),
                })
            });
        if let Ok(found) = &lookup {
            span.record("cache.status", found.status.as_str());
            if let Some(tier) = found.tier {
                span.record("cache.tier", tier.as_str());
            }
        }
        lookup
    }

    /// Looks up distinct `ids` with one Redis round trip for all of them and
    /// one load for all that missed (see `Catalog::lookup`).
    pub async fn get_many(
        &self,
        ids: &[S::Id],
    ) -> Result<BatchLookup<S::Id, S::Value>, LookupError<S::Id>> {
        let span = tracing::info_span!(
            "cache batch lookup",
            ids = ids.len(),
            cache.hits = tracing::field::Empty,
            cache.misses = tracing::field::Empty,
        );
        let lookup = self
            .lookup(ids)
            .instrument(span.clone())
            .await
            .map(|answers| BatchLookup::new(ids, answers));
        if let Ok(found) = &lookup {
            span.record("cache.hits", found.hits);
            span.record("cache.misses", found.misses);
        }
        lookup
    }

    /// The one lookup path, for one id or many: the near cache, then one
    /// Redis round trip for every id it did not hold, then one load for
    /// every id Redis could not answer. Answers come in the order of `ids`;
    /// if any id can be answered neither from the source of truth nor from a
    /// stale entry, the lookup fails with every such id.
    async fn lookup(&self, ids: &[S::Id]) -> Result<Vec<Lookup<S::Value>>, LookupError<S::Id>> {
        // Taken before anything is read: an invalidation from here on keeps
        // what this lookup reads out of the near cache.
        let tickets: Vec<Ticket> = ids.iter().map(|id| self.l1.ticket(id)).collect();
        // Keys are only spelled out for ids the near cache did not answer.
        let mut found: Vec<Cached<S::Value>> = Vec::with_capacity(ids.len());
        let (mut asked, mut asked_keys) = (Vec::new(), Vec::new());
        for (i, id) in ids.iter().enumerate() {
            if let Some(entry) = self.l1.get(id) {
                found.push(Cached::Near(entry));
                continue;
            }
            let key = self.prefix.key(id);
            if self.deferred.blocks(&key) {
                found.push(Cached::Bypassed);
            } else {
                found.push(Cached::Missing);
                asked.push(i);
                asked_keys.push(key);
            }
        }
        match self.l2.get_many(&asked_keys).await {
            Ok(values) => {
                for ((&i, key), value) in asked.iter().zip(&asked_keys).zip(values) {
                    found[i] = self.classify(&ids[i], key, value);
                }
            }
            Err(failure) => {
                log_bypass(&failure);
                for &i in &asked {
                    found[i] = Cached::Bypassed;
                }
            }
        }

        let mut answers: Vec<Option<Lookup<S::Value>>> = ids.iter().map(|_| None).collect();
        let mut to_load = Vec::new();
        for (i, state) in found.into_iter().enumerate() {
            let (answered, stale) = match state {
                Cached::Near(entry) => {
                    self.count_hit(&entry, Tier::L1);
                    self.refresh_if_due(&ids[i], &entry, Tier::L1);
                    answers[i] = Some(Lookup::hit(entry.value, Tier::L1));
                    continue;
                }
                Cached::Fresh(entry, size) => {
                    self.count_hit(&entry, Tier::L2);
                    self.refresh_if_due(&ids[i], &entry, Tier::L2);
                    self.fill_l1(&ids[i], &entry, size, &[tickets[i]]).await;
                    answers[i] = Some(Lookup::hit(entry.value, Tier::L2));
                    continue;
                }
                Cached::Stale(entry) => (LookupResult::Miss, Some(entry)),
                Cached::Missing => (LookupResult::Miss, None),
                Cached::Bypassed => (LookupResult::Bypass, None),
            };
            to_load.push((i, answered, stale));
        }
        let bypassed = to_load
            .iter()
            .filter(|(_, answered, _)| *answered == LookupResult::Bypass)
            .count();
        CacheStats::add(&self.stats.lookups, to_load.len() as u64);
        CacheStats::add(&self.stats.misses, to_load.len() as u64);
        CacheStats::add(&self.stats.bypassed, bypassed as u64);
        let heading_for = to_load.iter().map(|&(_, answered, _)| answered).collect();
        let mut endings = Endings::new(&self.stats, heading_for);

        let load_ids: Vec<S::Id> = to_load.iter().map(|&(i, ..)| ids[i].clone()).collect();
        let mut outcomes = self.load(&load_ids, LoadFor::Lookup).await.into_iter();
        let mut failed: Option<LookupError<S::Id>> = None;
        for (n, (i, answered, stale)) in to_load.into_iter().enumerate() {
            let outcome = outcomes
                .next()
                .unwrap_or_else(|| Err(SourceError::failed("no outcome for the id")));
            match outcome {
                Ok(loaded) => {
                    endings.end(n, answered);
                    if let Some(stored) = &loaded.stored {
                        let both: Vec<Ticket> =
                            [tickets[i]].into_iter().chain(loaded.ticket).collect();
                        self.fill_l1(&ids[i], &stored.entry, stored.size, &both)
                            .await;
                    }
                    answers[i] = Some(Lookup {
                        value: loaded.value,
                        status: match answered {
                            LookupResult::Bypass => CacheStatus::Bypass,
                            _ => CacheStatus::Miss,
                        },
                        tier: None,
                        age: None,
                    });
                }
                Err(cause) => match stale.filter(|_| !cause.superseded) {
                    Some(entry) => {
                        endings.end(n, LookupResult::Stale);
                        answers[i] = Some(self.serve_stale(entry));
                    }
                    None => {
                        endings.end(n, LookupResult::Error);
                        let failure = failed.get_or_insert_with(|| LookupError {
                            ids: Vec::new(),
                            cause,
                        });
                        failure.ids.push(ids[i].clone());
                    }
                },
            }
        }
        match failed {
            Some(failure) => Err(failure),
            // Every id was answered: by a cache, a load or a stale entry.
            None => Ok(answers.into_iter().flatten().collect()),
        }
    }

    /// Keeps what a lookup read in the near cache, unless an invalidation
    /// came after its ticket (or, for an answer from a load, after the load's).
    async fn fill_l1(&self, id: &S::Id, entry: &Entry<S::Value>, size: usize, tickets: &[Ticket]) {
        if self.l1.is_usable() {
            self.hooks.before_l1_fill(id).await;
            self.l1.insert(id, entry, size, tickets);
        }
    }

    fn classify(&self, id: &S::Id, key: &CacheKey, value: Option<Vec<u8>>) -> Cached<S::Value> {
        let Some(bytes) = value else {
            return Cached::Missing;
        };
        match cache::decode(id, &bytes) {
            Ok(entry) => match entry.freshness(cache::now_ms()) {
                Freshness::Fresh { .. } => Cached::Fresh(entry, bytes.len()),
                Freshness::Stale => Cached::Stale(entry),
            },
            Err(err) => {
                CacheStats::bump(&self.stats.corrupt);
                tracing::warn!(%key, error = %err, "undecodable cached value; treating it as a miss");
                Cached::Missing
            }
        }
    }

    fn count_hit(&self, entry: &Entry<S::Value>, tier: Tier) {
        CacheStats::bump(&self.stats.lookups);
        CacheStats::bump(match tier {
            Tier::L1 => &self.stats.l1_hits,
            Tier::L2 => &self.stats.l2_hits,
        });
        if entry.value.is_none() {
            CacheStats::bump(&self.stats.negative_hits);
        }
    }

    /// Fail-safe: the source of truth failed, but Redis still holds a value
    /// within its stale window.
    fn serve_stale(&self, entry: Entry<S::Value>) -> Lookup<S::Value> {
        let age = entry.age(cache::now_ms());
        Lookup {
            value: entry.value,
            status: CacheStatus::Stale,
            tier: None,
            age: Some(age),
        }
    }
}

fn log_bypass(failure: &RedisFailure) {
    tracing::debug!(error = %failure, "redis bypassed");
}

/// A source-of-truth call in a client span, with its duration recorded;
/// `kind` names a failure (`error.type`), `None` for an expected refusal
/// such as a version conflict.
async fn source_call<T, E>(
    metrics: &Metrics,
    source: &impl Source,
    operation: &'static str,
    kind: impl Fn(&E) -> Option<&'static str>,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let system = source.system();
    let span = spans::source_of_truth(system, source.collection(), operation);
    let started = Instant::now();
    let result = call.instrument(span.clone()).await;
    let error = result.as_ref().err().and_then(&kind);
    if let Some(kind) = error {
        spans::failed(&span, kind);
    }
    metrics.db_operation(system, operation, error, started.elapsed());
    result
}
