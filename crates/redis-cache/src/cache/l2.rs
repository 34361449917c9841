//! Cache operations against Redis (L2). Each public method is a bounded number
//! of round trips, stated on the method, whatever the number of keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{Pipeline, RedisError};

use super::key::{CacheKey, KeyPattern};
use super::link::{RedisFailure, RedisLink};

/// Keys asked for per `SCAN` call and deleted per `UNLINK` call.
const SCAN_BATCH: usize = 1000;

#[derive(Clone)]
pub struct RedisCache {
    link: RedisLink,
    ttl: Duration,
    round_trips: Arc<AtomicU64>,
}

impl RedisCache {
    pub fn new(link: RedisLink, ttl: Duration) -> Self {
        Self {
            link,
            ttl,
            round_trips: Arc::default(),
        }
    }

    pub fn link(&self) -> &RedisLink {
        &self.link
    }

    /// Round trips made on behalf of requests since start (health checks and
    /// the subscriber's own connection are not counted).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// `GET`: one round trip.
    pub async fn get(&self, key: &CacheKey) -> Result<Option<Vec<u8>>, RedisFailure> {
        let cmd = redis::cmd("GET").arg(key).to_owned();
        self.run(move |mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    /// `MGET` of all keys: one round trip.
    pub async fn get_many(&self, keys: &[CacheKey]) -> Result<Vec<Option<Vec<u8>>>, RedisFailure> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let cmd = redis::cmd("MGET").arg(keys).to_owned();
        self.run(move |mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    /// One `SET … PX ttl` per entry, all in one pipeline: one round trip.
    /// Returns how many values were written (with [`Overwrite::IfAbsent`],
    /// keys that already held a value are left alone and not counted).
    pub async fn fill_many(
        &self,
        entries: Vec<(CacheKey, Vec<u8>)>,
        overwrite: Overwrite,
    ) -> Result<usize, RedisFailure> {
        if entries.is_empty() {
            return Ok(0);
        }
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let mut pipe = Pipeline::with_capacity(entries.len());
        for (key, value) in entries {
            let cmd = pipe.cmd("SET").arg(key).arg(value).arg("PX").arg(ttl_ms);
            if overwrite == Overwrite::IfAbsent {
                cmd.arg("NX");
            }
        }
        let replies: Vec<redis::Value> = self
            .run(move |mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        Ok(replies
            .iter()
            .filter(|reply| !matches!(reply, redis::Value::Nil))
            .count())
    }

    /// `UNLINK` of all keys: one round trip. Returns how many existed.
    pub async fn delete(&self, keys: &[CacheKey]) -> Result<u64, RedisFailure> {
        if keys.is_empty() {
            return Ok(0);
        }
        let cmd = redis::cmd("UNLINK").arg(keys).to_owned();
        self.run(move |mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    /// Deletes every key matching `pattern` with `SCAN MATCH … COUNT 1000` and
    /// `UNLINK` per batch (never `KEYS`, which blocks Redis): about two round
    /// trips per thousand keys in the database. Returns how many were deleted.
    pub async fn delete_matching(&self, pattern: &KeyPattern) -> Result<u64, RedisFailure> {
        let (mut cursor, mut deleted) = (0, 0);
        loop {
            let (next, keys) = self.scan_page(pattern, cursor).await?;
            if !keys.is_empty() {
                let cmd = redis::cmd("UNLINK").arg(keys).to_owned();
                deleted += self
                    .run(move |mut c| async move { cmd.query_async::<u64>(&mut c).await })
                    .await?;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// Counts keys matching `pattern` with `SCAN`: one round trip per thousand
    /// keys in the database. `SCAN` may return a key twice while Redis resizes
    /// its table, so under heavy churn the count can be slightly high.
    pub async fn count_matching(&self, pattern: &KeyPattern) -> Result<u64, RedisFailure> {
        let (mut cursor, mut count) = (0, 0);
        loop {
            let (next, keys) = self.scan_page(pattern, cursor).await?;
            count += keys.len() as u64;
            if next == 0 {
                return Ok(count);
            }
            cursor = next;
        }
    }

    /// `PUBLISH`: one round trip. Returns the number of subscribers reached.
    pub async fn publish(&self, channel: &str, payload: &str) -> Result<u64, RedisFailure> {
        let cmd = redis::cmd("PUBLISH").arg(channel).arg(payload).to_owned();
        self.run(move |mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    /// One `SCAN cursor MATCH pattern COUNT 1000`: the next cursor and a page of keys.
    async fn scan_page(
        &self,
        pattern: &KeyPattern,
        cursor: u64,
    ) -> Result<(u64, Vec<Vec<u8>>), RedisFailure> {
        let cmd = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern.as_str())
            .arg("COUNT")
            .arg(SCAN_BATCH)
            .to_owned();
        self.run(move |mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    async fn run<T, F, Fut>(&self, op: F) -> Result<T, RedisFailure>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        self.link.run(op).await
    }
}

/// Whether a fill may replace a value already in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Read-through fills: the source of truth was just read, so it wins.
    Always,
    /// Warming: never replace what readers have already filled.
    IfAbsent,
}
