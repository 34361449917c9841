//! Loading what the cache could not answer, for a group of ids at once:
//!
//! 1. ids whose last source-of-truth read failed within the throttle
//!    interval fail at once (see [`super::failsafe`]);
//! 2. take the ids' leases in Redis (one pipeline). A lease held by another
//!    instance means it is loading that id: wait for its fill instead of
//!    reading the source of truth too, and take over if its lease expires.
//!    A lease marked failed means the last load failed moments ago: fail at
//!    once, as in step 1;
//! 3. read the source of truth once for every id still to load; if that
//!    fails, mark the leases failed for the throttle interval;
//! 4. fill Redis under the leases (one script): a writer deletes the lease
//!    with the key, so a fill whose read may predate a commit is refused;
//!    the ids it was refused for are read once more, so nobody is handed a
//!    value that a write has already replaced.
//!
//! Without a usable Redis (down, circuit open, invalidation deferred) steps 2
//! and 4 are skipped: the source of truth is read and nothing is filled.
//!
//! Lookups and warming load through [`Catalog::load`], which shares a load
//! of one id between concurrent lookups ([`super::flight`]); an early
//! refresh ([`super::refresh`]) runs the same steps through
//! [`Catalog::load_alone`], since nobody waits for it: it gives up where a
//! lookup would wait or read without Redis, and its entry's freshness
//! continues from the old one's.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use super::flight::{FlightOutcome, Lead};
use super::{Catalog, Source, SourceFailure};
use crate::cache::{
    self, CacheId, CacheKey, CacheStats, Cacheable, Entry, Fill, Freshness, LeaseTry, Overwrite,
    Ticket,
};
use crate::telemetry::spans;

/// First and longest pause between two looks at a key whose lease another
/// instance holds.
const PEER_POLL_FIRST: Duration = Duration::from_millis(5);
const PEER_POLL_MAX: Duration = Duration::from_millis(50);

pub type Outcome<V> = Result<Loaded<V>, SourceError>;

/// Ids answered by a fill in Redis, with what was filled.
type Filled<S> = Vec<(<S as Source>::Id, Arc<Stored<<S as Source>::Value>>)>;

impl<V: Cacheable> FlightOutcome for Outcome<V> {
    fn abandoned() -> Self {
        Err(SourceError::failed("the load was abandoned"))
    }
}

#[derive(Debug, Clone)]
pub struct Loaded<V> {
    pub value: Option<V>,
    /// Whether this load wrote the value to Redis.
    pub filled: bool,
    /// The entry now in Redis for the id, as it was written there (by this
    /// load or by the one it waited for): what the near cache may keep. `None`
    /// when the answer is not in Redis (bypass, voided fill).
    pub stored: Option<Arc<Stored<V>>>,
    /// The near-cache ticket taken when the load started.
    pub ticket: Option<Ticket>,
}

/// An entry as it is in Redis, with its encoded size.
#[derive(Debug)]
pub struct Stored<V> {
    pub entry: Entry<V>,
    pub size: usize,
}

/// Why the source of truth gave no answer. Cloned to every waiter.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{cause}")]
pub struct SourceError {
    /// Unreachable, timing out or throttled, as opposed to failing a query.
    pub unavailable: bool,
    /// A write replaced the value while it was being loaded: a stale cached
    /// value, older still, is no fallback.
    pub superseded: bool,
    /// The database could not be reached, or did not answer in time.
    pub outage: bool,
    pub cause: Arc<str>,
}

impl SourceError {
    pub fn failed(cause: &str) -> Self {
        Self {
            unavailable: false,
            superseded: false,
            outage: false,
            cause: cause.into(),
        }
    }

    fn unavailable(cause: &str) -> Self {
        Self {
            unavailable: true,
            superseded: false,
            outage: false,
            cause: cause.into(),
        }
    }

    fn from_source(err: &impl SourceFailure) -> Self {
        Self {
            unavailable: err.is_unavailable(),
            superseded: false,
            outage: err.is_outage(),
            cause: error_chain(err).into(),
        }
    }
}

/// An error and its causes on one line (a source's error need not be
/// `Clone`, so waiters share this text instead).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Who a load is for: only lookups count in the lookup statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LoadFor {
    Lookup,
    Warming,
    /// An early refresh of an entry fresh until `due` (ms since the epoch).
    Refresh {
        due: i64,
    },
}

impl LoadFor {
    /// Whether `entry`, found in Redis when taking the lease, answers the
    /// load: any fresh entry does, except for a refresh, which needs one
    /// newer than the entry it refreshes.
    fn answered_by<V>(self, entry: &Entry<V>) -> bool {
        match self {
            LoadFor::Refresh { due } => entry.fresh_until > due,
            LoadFor::Lookup | LoadFor::Warming => true,
        }
    }

    /// Where the new entry's freshness starts: when the value was read, or
    /// for a refresh where the old entry's ends (a key read without pause
    /// then costs one source-of-truth read per TTL).
    fn fresh_from(self, fetched_at: i64) -> i64 {
        match self {
            LoadFor::Refresh { due } => due,
            LoadFor::Lookup | LoadFor::Warming => fetched_at,
        }
    }
}

impl<S: Source> Catalog<S> {
    /// Loads distinct `ids`, joining loads of the same ids already in
    /// progress in this process. Outcomes come in the order of `ids`.
    pub(super) async fn load(&self, ids: &[S::Id], purpose: LoadFor) -> Vec<Outcome<S::Value>> {
        let assignment = self.flights.join_or_lead(ids);
        if purpose == LoadFor::Lookup {
            CacheStats::add(&self.stats.coalesced, assignment.joined as u64);
        }
        if !assignment.leads.is_empty() {
            // Its own task: waiters that give up (clients hanging up) must not
            // cancel a load others are waiting for. Its span is a child of
            // the lookup that started it.
            let span = tracing::info_span!("cache load", ids = assignment.leads.len());
            let this = self.clone();
            let lead = async move { this.lead(assignment.leads, purpose).await };
            tokio::spawn(lead.instrument(span));
        }
        futures::future::join_all(assignment.outcomes).await
    }

    /// Loads distinct `ids` on their own: no lookup joins this load, nor
    /// does it join theirs. Outcomes by id (an id may have none).
    pub(super) async fn load_alone(
        &self,
        ids: &[S::Id],
        purpose: LoadFor,
    ) -> HashMap<S::Id, Outcome<S::Value>> {
        let mut outcomes = Settle::default();
        self.load_group(ids.to_vec(), purpose, &mut outcomes).await;
        outcomes.unled
    }

    async fn lead(&self, leads: Vec<Lead<S::Id, Outcome<S::Value>>>, purpose: LoadFor) {
        let ids: Vec<S::Id> = leads.iter().map(|lead| lead.id.clone()).collect();
        let mut outcomes = Settle {
            tickets: ids
                .iter()
                .map(|id| (id.clone(), self.l1.ticket(id)))
                .collect(),
            leads: leads
                .into_iter()
                .map(|lead| (lead.id.clone(), lead))
                .collect(),
            unled: HashMap::new(),
        };
        self.load_group(ids, purpose, &mut outcomes).await;
        for (_, lead) in outcomes.leads.drain() {
            lead.finish(Err(SourceError::failed("id was not loaded")));
        }
    }

    async fn load_group(
        &self,
        ids: Vec<S::Id>,
        purpose: LoadFor,
        outcomes: &mut Settle<S::Id, S::Value>,
    ) {
        let (throttled, ids): (Vec<S::Id>, Vec<S::Id>) =
            ids.into_iter().partition(|id| self.failsafe.throttled(id));
        for id in throttled {
            let cause = "source of truth failed recently; not retried yet";
            outcomes.settle(id, Err(SourceError::unavailable(cause)));
        }

        let token = uuid::Uuid::new_v4().simple().to_string();
        // Ids whose value Redis may take: under a lease of ours when leases
        // are on (those whose lease we could not take move on), plainly when off.
        let mut leased = Vec::new();
        let mut unleased = Vec::new();
        let mut held = Vec::new();
        let redis_usable = self.l2.link().usable();
        for id in ids {
            if redis_usable && !self.deferred.blocks(&self.prefix.key(&id)) {
                leased.push(id);
            } else {
                unleased.push(id);
            }
        }
        if self.policy.leases && !leased.is_empty() {
            let keys = self.keys(&leased);
            match self
                .l2
                .try_leases(&keys, &token, self.policy.lease_ttl)
                .await
            {
                Ok(tries) => {
                    let candidates = std::mem::take(&mut leased);
                    let mut already_filled = Vec::new();
                    let mut failed_elsewhere = Vec::new();
                    for (id, attempt) in candidates.into_iter().zip(tries) {
                        match attempt {
                            LeaseTry::Held => held.push(id),
                            LeaseTry::Failed => failed_elsewhere.push(id),
                            LeaseTry::Taken { current } => {
                                match fresh(&id, current)
                                    .filter(|stored| purpose.answered_by(&stored.entry))
                                {
                                    Some(stored) => already_filled.push((id, stored)),
                                    None => leased.push(id),
                                }
                            }
                        }
                    }
                    self.use_filled(already_filled, &token, outcomes).await;
                    self.failed_elsewhere(failed_elsewhere, outcomes);
                }
                Err(failure) => {
                    tracing::debug!(error = %failure, "cannot take leases; reading without");
                    // Some may have been taken before the failure: give them
                    // back so peers do not wait for a fill that never comes.
                    let (l2, token) = (self.l2.clone(), token.clone());
                    let release = async move { l2.release_leases(&keys, &token).await };
                    tokio::spawn(release.in_current_span());
                    unleased.append(&mut leased);
                }
            }
        }
        if matches!(purpose, LoadFor::Refresh { .. }) {
            // Nobody waits for a refresh: what it cannot fill (Redis not
            // usable, another instance loading) is not worth a read.
            for id in unleased.drain(..).chain(held.drain(..)) {
                let cause = "not refreshed: redis is unavailable or another load holds the lease";
                outcomes.settle(id, Err(SourceError::failed(cause)));
            }
        }
        if !held.is_empty() {
            let waited = self.wait_for_peers(held, &token, outcomes).await;
            leased.extend(waited.taken_over);
            unleased.extend(waited.gave_up);
        }

        let to_read: Vec<S::Id> = leased.iter().chain(&unleased).cloned().collect();
        if to_read.is_empty() {
            return;
        }
        let fetched_at = cache::now_ms();
        let mut found = match self.read_source(&to_read).await {
            Ok(found) => found,
            Err(err) => {
                self.failsafe.failed(&to_read);
                // The leases stay, marked failed: other instances answer from
                // what they have instead of trying the source of truth too.
                if self.policy.leases {
                    let keys = self.keys(&leased);
                    let throttle = self.policy.failsafe_throttle;
                    let _ = self.l2.mark_failed(&keys, &token, throttle).await;
                }
                for id in to_read {
                    outcomes.settle(id, Err(err.clone()));
                }
                return;
            }
        };
        self.failsafe.succeeded(&to_read);
        self.hooks.before_fill(&to_read).await;

        let lease = self.policy.leases.then_some(token.as_str());
        let times = (fetched_at, purpose.fresh_from(fetched_at));
        let FillResult { mut filled, voided } = self.fill(&leased, &found, times, lease).await;
        if matches!(purpose, LoadFor::Refresh { .. }) {
            CacheStats::add(&self.stats.early_refreshes, filled.len() as u64);
        }
        let voided_ids: HashSet<&S::Id> = voided.iter().collect();
        for id in &to_read {
            if !voided_ids.contains(id) {
                let stored = filled.remove(id);
                let loaded = Loaded {
                    value: found.remove(id),
                    filled: stored.is_some(),
                    stored,
                    ticket: None,
                };
                outcomes.settle(id.clone(), Ok(loaded));
            }
        }
        if voided.is_empty() {
            return;
        }
        if matches!(purpose, LoadFor::Refresh { .. }) {
            // Nobody waits for a refresh's answer: not read again.
            let err = SourceError {
                superseded: true,
                ..SourceError::failed("a write replaced the value during the refresh")
            };
            for id in voided {
                outcomes.settle(id, Err(err.clone()));
            }
            return;
        }
        // A write deleted these leases after we took them: what we read may
        // predate it, so it is not an answer. Read once more; that answer is
        // not cached. If the read fails, the ids fail with it rather than be
        // answered with a value a write has replaced.
        match self.read_source(&voided).await {
            Ok(mut again) => {
                for id in voided {
                    let loaded = Loaded {
                        value: again.remove(&id),
                        filled: false,
                        stored: None,
                        ticket: None,
                    };
                    outcomes.settle(id, Ok(loaded));
                }
            }
            Err(err) => {
                self.failsafe.failed(&voided);
                let err = SourceError {
                    superseded: true,
                    ..err
                };
                for id in voided {
                    outcomes.settle(id, Err(err.clone()));
                }
            }
        }
    }

    /// Writes what was read for `ids` to Redis: under `lease` (one script;
    /// a fill whose lease a write deleted is refused, "voided"), or with
    /// leases switched off plain `SET`s, exposed to the stale-set race.
    /// `times` are when the value was read and where its freshness starts.
    /// Absences are filled only with negative caching on; otherwise their
    /// leases are given back.
    async fn fill(
        &self,
        ids: &[S::Id],
        found: &HashMap<S::Id, S::Value>,
        (fetched_at, fresh_from): (i64, i64),
        lease: Option<&str>,
    ) -> FillResult<S::Id, S::Value> {
        let mut fills = Vec::new();
        let mut filling = Vec::new();
        let mut released = Vec::new();
        for id in ids {
            let key = self.prefix.key(id);
            match self
                .policy
                .entry(found.get(id).cloned(), fetched_at, fresh_from)
            {
                Some((entry, keep_for)) => {
                    let value = entry.encode();
                    let size = value.len();
                    fills.push(Fill {
                        key,
                        value,
                        keep_for,
                    });
                    filling.push((id.clone(), Arc::new(Stored { entry, size })));
                }
                None => released.push(key),
            }
        }
        let mut result = FillResult::default();
        let Some(token) = lease else {
            if let Ok(n) = self.l2.fill_unleased(fills, Overwrite::Always).await {
                CacheStats::add(&self.stats.fills, n as u64);
                result.filled = filling.into_iter().collect();
            }
            return result;
        };
        if !released.is_empty() {
            let _ = self.l2.release_leases(&released, token).await;
        }
        match self.l2.fill_leased(token, fills).await {
            Ok(written) => {
                for ((id, stored), written) in filling.into_iter().zip(written) {
                    if written {
                        result.filled.insert(id, stored);
                    } else {
                        result.voided.push(id);
                    }
                }
                CacheStats::add(&self.stats.fills, result.filled.len() as u64);
            }
            Err(failure) => {
                // Whether the script ran (and found its leases) is unknown:
                // a write may have come in between, so what was read is
                // treated like a voided fill and read again.
                tracing::debug!(error = %failure, "cache fill failed");
                result.voided = filling.into_iter().map(|(id, _)| id).collect();
            }
        }
        result
    }

    /// Waits while other instances load `held` ids: returns what they filled,
    /// the ids whose lease expired and which we now hold, and the ids we gave
    /// up waiting for (read without a lease). Bounded by about one lease TTL.
    async fn wait_for_peers(
        &self,
        held: Vec<S::Id>,
        token: &str,
        outcomes: &mut Settle<S::Id, S::Value>,
    ) -> PeerWait<S::Id> {
        let mut wait = PeerWait::default();
        let mut waiting = held;
        let deadline = Instant::now() + self.policy.lease_ttl + PEER_POLL_MAX * 2;
        let mut pause = PEER_POLL_FIRST;
        while !waiting.is_empty() {
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(PEER_POLL_MAX);
            let keys = self.keys(&waiting);
            let Ok(values) = self.l2.get_with_leases(&keys).await else {
                break;
            };
            let (mut still, mut filled, mut failed) = (Vec::new(), Vec::new(), Vec::new());
            for (id, (value, lease_failed)) in waiting.into_iter().zip(values) {
                match fresh(&id, value) {
                    Some(stored) => filled.push((id, stored)),
                    None if lease_failed => failed.push(id),
                    None => still.push(id),
                }
            }
            // Settled at once, not when every id of the group is done (R5a).
            self.settle_from_peers(filled, outcomes);
            self.failed_elsewhere(failed, outcomes);
            waiting = still;
            if waiting.is_empty() {
                break;
            }
            // A holder that died leaves a lease that expires: take over.
            let keys = self.keys(&waiting);
            let Ok(tries) = self
                .l2
                .try_leases(&keys, token, self.policy.lease_ttl)
                .await
            else {
                break;
            };
            let (mut still, mut filled, mut failed) = (Vec::new(), Vec::new(), Vec::new());
            for (id, attempt) in waiting.into_iter().zip(tries) {
                match attempt {
                    LeaseTry::Held => still.push(id),
                    LeaseTry::Failed => failed.push(id),
                    LeaseTry::Taken { current } => match fresh(&id, current) {
                        // The holder filled between our poll and our take.
                        Some(stored) => filled.push((id, stored)),
                        None => wait.taken_over.push(id),
                    },
                }
            }
            if !filled.is_empty() {
                let keys: Vec<CacheKey> =
                    filled.iter().map(|(id, _)| self.prefix.key(id)).collect();
                let _ = self.l2.release_leases(&keys, token).await;
                self.settle_from_peers(filled, outcomes);
            }
            self.failed_elsewhere(failed, outcomes);
            waiting = still;
        }
        wait.gave_up = waiting;
        wait
    }

    /// Ids answered by another load's fill, read from Redis.
    fn settle_from_peers(&self, filled: Filled<S>, outcomes: &mut Settle<S::Id, S::Value>) {
        CacheStats::add(&self.stats.lease_waits, filled.len() as u64);
        for (id, stored) in filled {
            outcomes.settle(id, Ok(Loaded::from_peer(stored)));
        }
    }

    /// Ids whose last load, on any instance, failed to read the source of
    /// truth less than a throttle interval ago: they fail at once, like ids
    /// this instance failed to read itself (see [`super::failsafe`]).
    fn failed_elsewhere(&self, ids: Vec<S::Id>, outcomes: &mut Settle<S::Id, S::Value>) {
        if ids.is_empty() {
            return;
        }
        self.failsafe.failed(&ids);
        let cause = "source of truth failed moments ago on another instance; not retried yet";
        for id in ids {
            outcomes.settle(id, Err(SourceError::unavailable(cause)));
        }
    }

    /// Ids whose lease we took but whose key another load had just filled:
    /// their value is the answer; the leases go back at once.
    async fn use_filled(
        &self,
        filled: Filled<S>,
        token: &str,
        outcomes: &mut Settle<S::Id, S::Value>,
    ) {
        if filled.is_empty() {
            return;
        }
        let keys: Vec<CacheKey> = filled.iter().map(|(id, _)| self.prefix.key(id)).collect();
        let _ = self.l2.release_leases(&keys, token).await;
        for (id, stored) in filled {
            outcomes.settle(id, Ok(Loaded::from_peer(stored)));
        }
    }

    /// [`Catalog::read_source_now`], or a failure at once while the database
    /// is known to be down.
    pub(super) async fn read_source(
        &self,
        ids: &[S::Id],
    ) -> Result<HashMap<S::Id, S::Value>, SourceError> {
        let outage = |result: &Result<_, SourceError>| matches!(result, Err(err) if err.outage);
        let down = || SourceError::unavailable("source of truth down moments ago; not tried");
        self.source_guarded(self.read_source_now(ids), outage, down)
            .await
    }

    /// One source-of-truth read for `ids`, after the configured artificial
    /// delay, bounded by the source timeout. Returns the values that exist.
    async fn read_source_now(
        &self,
        ids: &[S::Id],
    ) -> Result<HashMap<S::Id, S::Value>, SourceError> {
        CacheStats::bump(&self.stats.upstream_fetches);
        let system = self.source.system();
        let span = spans::source_of_truth(system, self.source.collection(), "SELECT");
        span.record("ids", ids.len());
        let read = async {
            if !self.policy.source_delay.is_zero() {
                tokio::time::sleep(self.policy.source_delay).await;
            }
            self.source.get_many(ids).await
        };
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.policy.source_timeout, read)
            .instrument(span.clone())
            .await;
        let error = match &outcome {
            Ok(Ok(_)) => None,
            Ok(Err(err)) => Some(err.kind()),
            Err(_) => Some("timeout"),
        };
        if let Some(kind) = error {
            spans::failed(&span, kind);
        }
        self.metrics
            .db_operation(system, "SELECT", error, started.elapsed());
        match outcome {
            Ok(Ok(values)) => Ok(values
                .into_iter()
                .map(|value| (value.id().clone(), value))
                .collect()),
            Ok(Err(err)) => {
                tracing::warn!(error = %error_chain(&err), ids = ids.len(), "source of truth read failed");
                Err(SourceError::from_source(&err))
            }
            Err(_) => {
                tracing::warn!(ids = ids.len(), "source of truth read timed out");
                Err(SourceError {
                    outage: true,
                    ..SourceError::unavailable("source of truth timed out")
                })
            }
        }
    }

    fn keys(&self, ids: &[S::Id]) -> Vec<CacheKey> {
        ids.iter().map(|id| self.prefix.key(id)).collect()
    }
}

/// The entry in `value` if it decodes and is still fresh.
fn fresh<V: Cacheable>(id: &V::Id, value: Option<Vec<u8>>) -> Option<Arc<Stored<V>>> {
    let bytes = value?;
    let entry = cache::decode(id, &bytes).ok()?;
    matches!(entry.freshness(cache::now_ms()), Freshness::Fresh { .. }).then(|| {
        Arc::new(Stored {
            entry,
            size: bytes.len(),
        })
    })
}

impl<V: Clone> Loaded<V> {
    fn from_peer(stored: Arc<Stored<V>>) -> Self {
        Loaded {
            value: stored.entry.value.clone(),
            filled: false,
            stored: Some(stored),
            ticket: None,
        }
    }
}

/// The leads of one group load, finished one by one as soon as each outcome
/// is known, not when the whole group is done: a lookup that starts later must
/// not join a load whose answer is already decided, as that answer may predate
/// a write made since (another id of the group can take much longer).
struct Settle<I: CacheId, V: Cacheable> {
    leads: HashMap<I, Lead<I, Outcome<V>>>,
    /// Outcomes of ids no lead waits for (a load on its own).
    unled: HashMap<I, Outcome<V>>,
    /// Near-cache tickets taken when the load started, before it read
    /// anything: a lookup that joins later keeps the load's answer in L1 only
    /// if no invalidation came since then either.
    tickets: HashMap<I, Ticket>,
}

// Written out: derived, it would ask `I` and `V` to be `Default`.
impl<I: CacheId, V: Cacheable> Default for Settle<I, V> {
    fn default() -> Self {
        Self {
            leads: HashMap::new(),
            unled: HashMap::new(),
            tickets: HashMap::new(),
        }
    }
}

impl<I: CacheId, V: Cacheable> Settle<I, V> {
    fn settle(&mut self, id: I, mut outcome: Outcome<V>) {
        if let Ok(loaded) = &mut outcome {
            loaded.ticket = self.tickets.get(&id).copied();
        }
        match self.leads.remove(&id) {
            Some(lead) => lead.finish(outcome),
            None => {
                self.unled.insert(id, outcome);
            }
        }
    }
}

struct FillResult<I, V> {
    filled: HashMap<I, Arc<Stored<V>>>,
    /// Refused: a write deleted the lease.
    voided: Vec<I>,
}

impl<I, V> Default for FillResult<I, V> {
    fn default() -> Self {
        Self {
            filled: HashMap::new(),
            voided: Vec::new(),
        }
    }
}

struct PeerWait<I> {
    taken_over: Vec<I>,
    gave_up: Vec<I>,
}

impl<I> Default for PeerWait<I> {
    fn default() -> Self {
        Self {
            taken_over: Vec::new(),
            gave_up: Vec::new(),
        }
    }
}
