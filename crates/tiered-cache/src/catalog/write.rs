//! The write path and invalidation: commit, make Redis forget (voiding fills
//! in progress), tell the other instances, answer. The steps and their
//! numbers are those of `docs/cache-design.md`, section "Writes".

use std::time::Duration;

use tracing::Instrument;

use super::{Catalog, Invalidated, Source, WriteFailure};
use crate::cache::{
    self, Applied, CacheKey, CacheStats, Cacheable, Fill, KeyPattern, LeaseTry, RedisFailure,
};
use crate::invalidation::PublishError;
use crate::telemetry::spans;
use tokio_util::sync::CancellationToken;

impl<S: Source> Catalog<S> {
    /// A write of `id` to the source of truth, `commit` (step 1), through the
    /// write path: it runs to completion even if the caller goes away
    /// (`Catalog::detached`), in a source-of-truth span named `operation`,
    /// refused at once while the source is known to be down; if it may have
    /// committed, steps 2 to 5 follow before the answer.
    pub async fn write<T, E>(
        &self,
        id: S::Id,
        operation: &'static str,
        commit: impl Future<Output = Result<T, E>> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: WriteFailure,
    {
        let this = self.clone();
        self.detached(async move {
            let written = this.timed(operation, commit).await;
            if may_have_committed(&written) {
                this.invalidate_after_write(&id).await;
            }
            written
        })
        .await
    }

    /// A write that creates `id`'s value (`commit` returns it), written
    /// through to Redis so that the next read is a hit. The write-through is
    /// a fill under the id's lease, taken before the commit: any write or
    /// invalidation after it deletes the lease, which voids the fill, so the
    /// created value can never land over a newer one. When the lease cannot
    /// be had (a reader holds it, Redis is away) or the fill is voided, the
    /// create invalidates like any write: the id may be cached as absent, or
    /// hold a value from before a delete whose invalidation was deferred.
    pub async fn write_created<E>(
        &self,
        id: S::Id,
        operation: &'static str,
        commit: impl Future<Output = Result<S::Value, E>> + Send + 'static,
    ) -> Result<S::Value, E>
    where
        E: WriteFailure,
    {
        let this = self.clone();
        self.detached(async move {
            let token = this.lease_for_write_through(&id).await;
            let created = this.timed(operation, commit).await;
            let written_through = match (&created, &token) {
                (Ok(value), Some(token)) => this.write_through(value, token).await,
                _ => false,
            };
            if written_through {
                this.after_write(&id, false).await;
            } else if may_have_committed(&created) {
                this.invalidate_after_write(&id).await;
            } else if let Some(token) = token {
                // Nothing was written: readers waiting on the lease load.
                let key = this.prefix.key(&id);
                let _ = this.l2.release_leases(&[key], &token).await;
            }
            created
        })
        .await
    }

    /// The id's lease, when it is free and Redis usable (and leases on).
    async fn lease_for_write_through(&self, id: &S::Id) -> Option<String> {
        let key = self.prefix.key(id);
        if !self.policy.leases || !self.l2.link().usable() || self.deferred.blocks(&key) {
            return None;
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        let tries = self
            .l2
            .try_leases(std::slice::from_ref(&key), &token, self.policy.lease_ttl)
            .await
            .ok()?;
        matches!(tries.first(), Some(LeaseTry::Taken { .. })).then_some(token)
    }

    /// Fills `value` under the lease `token`: whether it landed.
    async fn write_through(&self, value: &S::Value, token: &str) -> bool {
        let now = cache::now_ms();
        let Some((entry, keep_for)) = self.policy.entry(Some(value.clone()), now, now) else {
            return false;
        };
        self.hooks
            .before_fill(std::slice::from_ref(value.id()))
            .await;
        let fill = Fill {
            key: self.prefix.key(value.id()),
            value: entry.encode(),
            keep_for,
        };
        match self.l2.fill_leased(token, vec![fill]).await {
            Ok(written) if written.first() == Some(&true) => {
                CacheStats::bump(&self.stats.fills);
                true
            }
            Ok(_) => false,
            Err(failure) => {
                // Whether it landed is unknown: the delete that follows
                // settles it either way.
                tracing::debug!(error = %failure, "write-through failed");
                false
            }
        }
    }

    /// A source-of-truth write, in a client span, with its duration recorded;
    /// refused at once while the database is known to be down.
    async fn timed<T, E: WriteFailure>(
        &self,
        operation: &'static str,
        write: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let call = super::source_call(&self.metrics, &self.source, operation, E::kind, write);
        let outage = |result: &Result<T, E>| matches!(result, Err(err) if err.is_outage());
        self.source_guarded(call, outage, E::source_down).await
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
        match self
            .writes
            .spawn(write.instrument(tracing::Span::current()))
            .await
        {
            Ok(done) => done,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(err) => unreachable!("write tasks are never aborted: {err}"),
        }
    }

    /// Waits, up to `limit`, for writes still running after their callers left.
    pub(crate) async fn finish_writes(&self, limit: Duration) -> bool {
        self.writes.close();
        tokio::time::timeout(limit, self.writes.wait())
            .await
            .is_ok()
    }

    /// Steps 2 to 5 of a write, after its commit (step 1). The key goes
    /// together with its lease, which voids any fill still in progress.
    async fn invalidate_after_write(&self, id: &S::Id) {
        self.after_write(id, true).await
    }

    /// After a commit (step 1): forget loads of `id` (2), delete its key and
    /// lease in Redis unless the new value was just written through (3),
    /// evict it from the near cache (4) and tell the other instances (5).
    async fn after_write(&self, id: &S::Id, delete_in_redis: bool) {
        self.flights.forget(id);
        self.failsafe.succeeded(std::slice::from_ref(id));
        let key = self.prefix.key(id);
        if delete_in_redis && let Err(failure) = self.l2.delete(std::slice::from_ref(&key)).await {
            log_deferred(&failure, key.as_str());
            self.deferred.add_key(key.clone());
        }
        // After Redis: a lookup that read the old value there before the
        // delete cannot put it back into L1 after this.
        self.l1.invalidate(id);
        self.publish(Some(&key), None).await;
    }

    /// Deletes `key` and/or every key matching `pattern` in Redis, then tells
    /// the other instances.
    pub async fn invalidate(
        &self,
        key: Option<CacheKey>,
        pattern: Option<KeyPattern>,
    ) -> Invalidated {
        let this = self.clone();
        self.detached(async move {
            this.forget_loads(key.as_ref(), pattern.as_ref());
            let outcome = this.apply_to_redis(key.as_ref(), pattern.as_ref()).await;
            this.evict_from_l1(key.as_ref(), pattern.as_ref());
            this.publish(key.as_ref(), pattern.as_ref()).await;
            outcome
        })
        .await
    }

    /// Lookups that start after an invalidation must not join a load that
    /// may have read the source of truth before the write behind it.
    pub(super) fn forget_loads(&self, key: Option<&CacheKey>, pattern: Option<&KeyPattern>) {
        self.flights.forget_where(|id| {
            let candidate = self.prefix.key(id);
            key == Some(&candidate) || pattern.is_some_and(|p| p.matches(&candidate))
        });
    }

    /// Evicts from the near cache; fills in flight for these keys are dropped.
    /// Always after the keys are gone from Redis, so that nothing read there
    /// before can come back.
    pub(super) fn evict_from_l1(&self, key: Option<&CacheKey>, pattern: Option<&KeyPattern>) {
        if let Some(id) = key.and_then(|key| self.prefix.id_of(key)) {
            self.l1.invalidate(&id);
        }
        if let Some(pattern) = pattern {
            self.l1.invalidate_matching(pattern);
        }
    }

    pub(super) async fn apply_to_redis(
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
                    self.deferred.add_key(key.clone());
                    outcome.deferred = true;
                }
            }
        }
        if let Some(pattern) = pattern {
            match self.l2.delete_matching(pattern).await {
                Ok(n) => outcome.deleted += n,
                Err(failure) => {
                    log_deferred(&failure, pattern.as_str());
                    self.deferred.add_pattern(pattern.clone());
                    outcome.deferred = true;
                }
            }
        }
        outcome
    }

    /// Whether it went out; if not, the keys go with the deferred deletes.
    pub(super) async fn publish(
        &self,
        key: Option<&CacheKey>,
        pattern: Option<&KeyPattern>,
    ) -> bool {
        let span = spans::invalidation_publish(
            crate::invalidation::CHANNEL,
            key.map(CacheKey::as_str),
            pattern.map(KeyPattern::as_str),
        );
        let published = self.publisher.publish(key, pattern).instrument(span).await;
        match published {
            Ok(()) => {
                CacheStats::bump(&self.stats.invalidations_published);
                true
            }
            Err(err) => {
                if matches!(&err, PublishError::Redis(failure) if matches!(**failure, RedisFailure::Disconnected | RedisFailure::CircuitOpen))
                {
                    tracing::debug!(error = %err, "invalidation not published: redis is down");
                } else {
                    tracing::warn!(error = %err, "invalidation could not be published");
                }
                // The other instances' near caches were not told. Receivers
                // will see the gap in our numbering; and the keys go with the
                // deferred deletes, which are announced again once applied.
                if let Some(key) = key {
                    self.deferred.add_key(key.clone());
                }
                if let Some(pattern) = pattern {
                    self.deferred.add_pattern(pattern.clone());
                }
                false
            }
        }
    }
}

/// Past this many keys, deferred deletes applied late are announced as one
/// namespace-wide pattern instead of one message per key.
const ANNOUNCE_KEYS_MAX: usize = 100;

impl<S: Source> Catalog<S> {
    /// Applies deletes deferred by a Redis outage whenever Redis answers,
    /// until `cancel` fires, and announces each batch on the channel: other
    /// instances' near caches may hold those values too.
    pub(crate) async fn retry_deferred(self, cancel: CancellationToken) {
        let everything = self.prefix.everything();
        let deferred = self.deferred.clone();
        let l2 = self.l2.clone();
        deferred
            .retry_until_cancelled(l2, everything, cancel, |applied| self.announce(applied))
            .await;
    }

    /// One last attempt at the deferred deletes (at shutdown); true when none
    /// is left.
    pub(crate) async fn apply_deferred_once(&self) -> bool {
        let everything = self.prefix.everything();
        if let Some(applied) = self.deferred.apply_once(&self.l2, &everything).await {
            self.announce(applied).await;
        }
        self.deferred.is_empty()
    }

    /// Whether every message went out.
    async fn announce(&self, applied: Applied) -> bool {
        let mut announced = true;
        if applied.everything || applied.keys.len() > ANNOUNCE_KEYS_MAX {
            announced &= self.publish(None, Some(&self.prefix.everything())).await;
        } else {
            for key in &applied.keys {
                announced &= self.publish(Some(key), None).await;
            }
        }
        for pattern in &applied.patterns {
            announced &= self.publish(None, Some(pattern)).await;
        }
        announced
    }
}

/// Whether a write may have changed the source of truth: see
/// [`WriteFailure::may_have_committed`]. Certain failures keep the cached
/// value, which fail-safe may still need while the database is down.
fn may_have_committed<T, E: WriteFailure>(result: &Result<T, E>) -> bool {
    match result {
        Ok(_) => true,
        Err(err) => err.may_have_committed(),
    }
}

/// A known outage was already reported by the connection; only a surprise
/// (timeout, refused command) deserves a warning per invalidation.
fn log_deferred(failure: &RedisFailure, target: &str) {
    match failure {
        RedisFailure::Disconnected | RedisFailure::CircuitOpen => {
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
