//! Maintenance: warming Redis with the values most recently changed,
//! polling Redis for `/metrics` (memory, keys), and counting the keys under
//! the cache's prefix, which concurrent callers share.

use std::time::{Duration, Instant};

use tracing::Instrument;

use super::load::LoadFor;
use super::{Catalog, Loaded, Source, SourceFailure, source_call};
use crate::cache::{self, CacheKey, Freshness};
use crate::telemetry::metrics::RedisInfo;

/// Bound on one `total_keys` count, however large or slow Redis is.
const KEY_COUNT_DEADLINE: Duration = Duration::from_secs(5);
/// Ids looked at per round of warming.
const WARM_CHUNK: usize = 500;

/// What warming did.
#[derive(Debug, PartialEq, Eq, serde::Serialize)]
pub struct Warmed {
    /// Ids considered (the most recently updated).
    pub read: usize,
    /// Of those, values written to Redis (the rest were already cached).
    pub loaded: usize,
    /// False when Redis stopped answering part-way.
    pub complete: bool,
}

/// When a namespace key count finished, and what it found (`None`: failed).
pub(super) type KeyCount = (Instant, Option<u64>);

impl<S: Source> Catalog<S> {
    /// Loads up to `limit` of the most recently changed values that Redis
    /// does not hold yet, through the normal load path (leases included).
    pub async fn warm(&self, limit: u32) -> Result<Warmed, S::Error> {
        let ids = source_call(
            &self.metrics,
            &self.source,
            "SELECT",
            |err: &S::Error| Some(err.kind()),
            self.source.recent_ids(limit),
        )
        .await?;
        let mut warmed = Warmed {
            read: ids.len(),
            loaded: 0,
            complete: true,
        };
        for chunk in ids.chunks(WARM_CHUNK) {
            let keys: Vec<CacheKey> = chunk.iter().map(|id| self.prefix.key(id)).collect();
            let Ok(values) = self.l2.get_many(&keys).await else {
                warmed.complete = false;
                break;
            };
            let now = cache::now_ms();
            let absent: Vec<S::Id> = chunk
                .iter()
                .zip(values)
                .filter(|(id, value)| {
                    !value
                        .as_deref()
                        .and_then(|bytes| cache::decode::<S::Value>(id, bytes).ok())
                        .is_some_and(|e| matches!(e.freshness(now), Freshness::Fresh { .. }))
                })
                .map(|(id, _)| id.clone())
                .collect();
            for outcome in self.load(&absent, LoadFor::Warming).await {
                if matches!(outcome, Ok(Loaded { filled: true, .. })) {
                    warmed.loaded += 1;
                }
            }
            if !self.l2.link().usable() {
                warmed.complete = false;
                break;
            }
        }
        if !warmed.complete {
            tracing::warn!("cache warming stopped: redis unavailable");
        }
        Ok(warmed)
    }
    /// Polls Redis every `interval` for `/metrics`: memory in use and keys
    /// (`INFO`), and the keys under the cache prefix (the same shared `SCAN`
    /// as `/stats`), until `cancel` fires.
    pub(crate) async fn poll_redis(
        self,
        interval: Duration,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            // Through the circuit breaker like any read: while the circuit
            // is open the poll is skipped, and once the cooldown is over the
            // poll may be the probe that closes it, traffic or not.
            let poll = async {
                match self.l2.info().await {
                    Ok((memory_used_bytes, memory_max_bytes, keyspace_keys)) => Some(RedisInfo {
                        memory_used_bytes,
                        memory_max_bytes,
                        keyspace_keys,
                        cached_keys: self.total_keys().await,
                    }),
                    Err(failure) => {
                        tracing::debug!(error = %failure, "redis INFO poll failed");
                        None
                    }
                }
            };
            let info = poll
                .instrument(tracing::info_span!(parent: None, "poll redis"))
                .await;
            self.metrics.set_redis_info(info);
        }
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
            // Failures are shared too, so callers queued behind a count that
            // timed out do not each wait out the deadline again.
            return count;
        }
        let everything = self.prefix.everything();
        let count = self.l2.count_matching(&everything);
        let count = match tokio::time::timeout(KEY_COUNT_DEADLINE, count).await {
            Ok(Ok(count)) => Some(count),
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
        };
        *last = Some((Instant::now(), count));
        count
    }
}
