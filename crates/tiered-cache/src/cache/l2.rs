//! Cache operations against Redis (L2). Each public method is a bounded number
//! of round trips, stated on the method, whatever the number of keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::Instrument;

use redis::aio::MultiplexedConnection;
use redis::{Pipeline, RedisError, Script};

use super::key::{CacheKey, KeyPattern};
use super::link::{RedisFailure, RedisLink};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::spans;

/// Keys asked for per `SCAN` call.
const SCAN_BATCH: usize = 1000;

/// Writes each value only if the caller still holds its key's lease, then
/// releases the lease. A writer deletes the lease together with the key, so a
/// fill that read the source of truth before a write committed can never land
/// after it. KEYS: item key and lease key, in pairs; ARGV[1]: the lease token,
/// then a value and a TTL in milliseconds per pair. Returns 1 or 0 per pair.
const FILL_LEASED: &str = r"
local filled = {}
for i = 1, #KEYS, 2 do
  local n = (i + 1) / 2
  if redis.call('GET', KEYS[i + 1]) == ARGV[1] then
    redis.call('SET', KEYS[i], ARGV[2 * n], 'PX', ARGV[2 * n + 1])
    redis.call('DEL', KEYS[i + 1])
    filled[n] = 1
  else
    filled[n] = 0
  end
end
return filled
";

/// Deletes each lease that still holds the caller's token. KEYS: lease keys;
/// ARGV[1]: the token.
const RELEASE_LEASES: &str = r"
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
  end
end
return 1
";

/// Marks a load that failed: replaces each lease still holding the caller's
/// token with [`FAILED_MARKER`] for the fail-safe throttle interval, so that
/// other instances answer from what they have instead of trying the source of
/// truth again at once. KEYS: lease keys; ARGV[1]: the token, ARGV[2]: the
/// marker, ARGV[3]: its lifetime in milliseconds.
const MARK_FAILED: &str = r"
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('SET', KEYS[i], ARGV[2], 'PX', ARGV[3])
  end
end
return 1
";

/// What a lease holds after its load failed (tokens are hex, so never this).
const FAILED_MARKER: &str = "!failed";

#[derive(Clone)]
pub struct RedisCache {
    link: RedisLink,
    metrics: Arc<Metrics>,
    round_trips: Arc<AtomicU64>,
    fill_leased: Arc<Script>,
    release_leases: Arc<Script>,
    mark_failed: Arc<Script>,
}

/// The outcome of trying to take one key's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseTry {
    /// Taken; `current` is what the key held just after.
    Taken { current: Option<Vec<u8>> },
    /// Another load holds it.
    Held,
    /// The last load failed to read the source of truth, moments ago.
    Failed,
}

/// A value to write, with how long Redis should keep it.
pub struct Fill {
    pub key: CacheKey,
    pub value: Vec<u8>,
    pub keep_for: Duration,
}

impl RedisCache {
    pub fn new(link: RedisLink, metrics: Arc<Metrics>) -> Self {
        Self {
            link,
            metrics,
            round_trips: Arc::default(),
            fill_leased: Arc::new(Script::new(FILL_LEASED)),
            release_leases: Arc::new(Script::new(RELEASE_LEASES)),
            mark_failed: Arc::new(Script::new(MARK_FAILED)),
        }
    }

    pub fn link(&self) -> &RedisLink {
        &self.link
    }

    /// Round trips sent to Redis on behalf of lookups, writes and
    /// invalidations since start (health checks, monitoring such as key
    /// counts and `INFO`, the subscriber's own connection, and operations
    /// skipped while disconnected or with the circuit open are not counted).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// `GET`: one round trip.
    pub async fn get(&self, key: &CacheKey) -> Result<Option<Vec<u8>>, RedisFailure> {
        let cmd = redis::cmd("GET").arg(key).to_owned();
        self.run(
            Op::new("GET", std::slice::from_ref(key)),
            move |mut c| async move { cmd.query_async(&mut c.conn).await },
        )
        .await
    }

    /// `MGET` of all keys (`GET` of one): one round trip, none for no keys.
    pub async fn get_many(&self, keys: &[CacheKey]) -> Result<Vec<Option<Vec<u8>>>, RedisFailure> {
        match keys {
            [] => return Ok(Vec::new()),
            [key] => return self.get(key).await.map(|value| vec![value]),
            _ => {}
        }
        let cmd = redis::cmd("MGET").arg(keys).to_owned();
        self.run(Op::new("MGET", keys), move |mut c| async move {
            cmd.query_async(&mut c.conn).await
        })
        .await
    }

    /// Tries to take the lease of every key (`SET <key>:lease <token> NX PX`)
    /// and reads each key and lease right after (`GET`, `GET`), all in one
    /// pipeline: one round trip. The `GET` of the key closes a gap: a lookup
    /// that missed a moment ago may find the lease free only because another
    /// load has just filled the key and released it; then the value is there
    /// to be used instead of a second source-of-truth read. The `GET` of the
    /// lease tells a load in progress from one that failed.
    pub async fn try_leases(
        &self,
        keys: &[CacheKey],
        token: &str,
        ttl: Duration,
    ) -> Result<Vec<LeaseTry>, RedisFailure> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = Pipeline::with_capacity(keys.len() * 3);
        for key in keys {
            pipe.cmd("SET")
                .arg(key.lease())
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(millis(ttl));
            pipe.cmd("GET").arg(key);
            pipe.cmd("GET").arg(key.lease());
        }
        let replies: Vec<redis::Value> = self
            .run(
                Op::pipeline(&[("SET", keys.len()), ("GET", 2 * keys.len())], keys)
                    .summary("take leases"),
                move |mut c| async move { pipe.query_async(&mut c.conn).await },
            )
            .await?;
        Ok(replies
            .chunks(3)
            .map(|replies| match replies {
                [redis::Value::Nil, _, lease] if is_failed_marker(lease) => LeaseTry::Failed,
                [redis::Value::Nil, _, _] => LeaseTry::Held,
                [_, redis::Value::BulkString(value), _] => LeaseTry::Taken {
                    current: Some(value.clone()),
                },
                _ => LeaseTry::Taken { current: None },
            })
            .collect())
    }

    /// `MGET` of the keys and their leases: one round trip. For each key, its
    /// value and whether its lease says the last load failed.
    pub async fn get_with_leases(
        &self,
        keys: &[CacheKey],
    ) -> Result<Vec<(Option<Vec<u8>>, bool)>, RedisFailure> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let leases: Vec<CacheKey> = keys.iter().map(CacheKey::lease).collect();
        let cmd = redis::cmd("MGET").arg(keys).arg(leases).to_owned();
        let mut replies: Vec<Option<Vec<u8>>> = self
            .run(
                Op::new("MGET", keys).summary("values and leases"),
                move |mut c| async move { cmd.query_async(&mut c.conn).await },
            )
            .await?;
        let leases = replies.split_off(keys.len());
        Ok(replies
            .into_iter()
            .zip(leases)
            .map(|(value, lease)| (value, lease.as_deref() == Some(FAILED_MARKER.as_bytes())))
            .collect())
    }

    /// After a failed load: marks the leases still held with `token` as
    /// failed for `throttle` (see [`MARK_FAILED`]), or gives them back when
    /// the throttle is zero. One round trip.
    pub async fn mark_failed(
        &self,
        keys: &[CacheKey],
        token: &str,
        throttle: Duration,
    ) -> Result<(), RedisFailure> {
        if keys.is_empty() {
            return Ok(());
        }
        if throttle.is_zero() {
            return self.release_leases(keys, token).await;
        }
        let leases: Vec<Vec<u8>> = keys
            .iter()
            .map(|key| key.lease().as_str().as_bytes().to_vec())
            .collect();
        let args =
            [token, FAILED_MARKER, &millis(throttle).to_string()].map(|a| a.as_bytes().to_vec());
        let invocation = ScriptCall::new(&self.mark_failed, &leases, &args);
        self.run(
            Op::new("EVALSHA", keys).summary("mark leases failed"),
            move |c| invocation.invoke::<i64>(c),
        )
        .await
        .map(drop)
    }

    /// Writes values under leases held with `token` (see `FILL_LEASED`):
    /// one round trip. Returns which ones were written.
    pub async fn fill_leased(
        &self,
        token: &str,
        fills: Vec<Fill>,
    ) -> Result<Vec<bool>, RedisFailure> {
        if fills.is_empty() {
            return Ok(Vec::new());
        }
        let mut script_keys = Vec::with_capacity(2 * fills.len());
        let mut args = Vec::with_capacity(1 + 2 * fills.len());
        args.push(token.as_bytes().to_vec());
        for fill in &fills {
            script_keys.push(fill.key.as_str().as_bytes().to_vec());
            script_keys.push(fill.key.lease().as_str().as_bytes().to_vec());
            args.push(fill.value.clone());
            args.push(millis(fill.keep_for).max(1).to_string().into_bytes());
        }
        let invocation = ScriptCall::new(&self.fill_leased, &script_keys, &args);
        let keys: Vec<CacheKey> = fills.iter().map(|fill| fill.key.clone()).collect();
        let written: Vec<i64> = self
            .run(
                Op::new("EVALSHA", &keys).summary("fill under leases"),
                move |c| invocation.invoke(c),
            )
            .await?;
        Ok(written.iter().map(|w| *w == 1).collect())
    }

    /// Gives back leases still held with `token`: one round trip.
    pub async fn release_leases(&self, keys: &[CacheKey], token: &str) -> Result<(), RedisFailure> {
        if keys.is_empty() {
            return Ok(());
        }
        let leases: Vec<Vec<u8>> = keys
            .iter()
            .map(|key| key.lease().as_str().as_bytes().to_vec())
            .collect();
        let invocation =
            ScriptCall::new(&self.release_leases, &leases, &[token.as_bytes().to_vec()]);
        self.run(
            Op::new("EVALSHA", keys).summary("release leases"),
            move |c| invocation.invoke::<i64>(c),
        )
        .await
        .map(drop)
    }

    /// One `SET … PX` per value, all in one pipeline: one round trip. With
    /// [`Overwrite::IfAbsent`] existing keys are left alone. Returns how many
    /// values were written. No lease is checked: only for warming absent keys
    /// and for running with leases switched off.
    pub async fn fill_unleased(
        &self,
        fills: Vec<Fill>,
        overwrite: Overwrite,
    ) -> Result<usize, RedisFailure> {
        if fills.is_empty() {
            return Ok(0);
        }
        let keys: Vec<CacheKey> = fills.iter().map(|fill| fill.key.clone()).collect();
        let mut pipe = Pipeline::with_capacity(fills.len());
        for fill in fills {
            let cmd = pipe
                .cmd("SET")
                .arg(fill.key)
                .arg(fill.value)
                .arg("PX")
                .arg(millis(fill.keep_for).max(1));
            if overwrite == Overwrite::IfAbsent {
                cmd.arg("NX");
            }
        }
        let replies: Vec<redis::Value> = self
            .run(
                Op::repeated("SET", keys.len(), &keys).summary("fill"),
                move |mut c| async move { pipe.query_async(&mut c.conn).await },
            )
            .await?;
        Ok(replies
            .iter()
            .filter(|reply| !matches!(reply, redis::Value::Nil))
            .count())
    }

    /// `UNLINK` of the keys and their leases (voiding fills in progress): one
    /// round trip. Returns how many values existed (leases are not counted).
    pub async fn delete(&self, keys: &[CacheKey]) -> Result<u64, RedisFailure> {
        if keys.is_empty() {
            return Ok(0);
        }
        // Leases first: a fill that runs between the two commands then finds
        // no lease and writes nothing. (Values first would let a fill land
        // after the value's delete, under a lease not deleted yet.)
        let mut pipe = Pipeline::with_capacity(2);
        let leases: Vec<CacheKey> = keys.iter().map(CacheKey::lease).collect();
        pipe.cmd("UNLINK").arg(leases).ignore();
        pipe.cmd("UNLINK").arg(keys);
        let (deleted,): (u64,) = self
            .run_essential(Op::repeated("UNLINK", 2, keys), move |mut c| async move {
                pipe.query_async(&mut c.conn).await
            })
            .await?;
        Ok(deleted)
    }

    /// Deletes every key matching `pattern`, and the leases of those keys, with
    /// `SCAN MATCH … COUNT 1000` and `UNLINK` per batch (never `KEYS`, which
    /// blocks Redis): about two round trips per thousand keys in the database,
    /// twice over. Returns how many values were deleted.
    ///
    /// Leases go in a full pass before any value: a load whose lease survived
    /// until after its value was deleted could still fill its older value.
    pub async fn delete_matching(&self, pattern: &KeyPattern) -> Result<u64, RedisFailure> {
        self.unlink_matching(&pattern.leases()).await?;
        self.unlink_matching(pattern).await
    }

    async fn unlink_matching(&self, pattern: &KeyPattern) -> Result<u64, RedisFailure> {
        let (mut cursor, mut deleted) = (0, 0);
        loop {
            let (next, keys) = self.scan_page(Purpose::Essential, pattern, cursor).await?;
            // A pattern such as `item:*` matches leases too: delete them, but
            // count only values.
            let (leases, values): (Vec<_>, Vec<_>) =
                keys.into_iter().partition(|k| CacheKey::is_lease(k));
            if !leases.is_empty() {
                let cmd = redis::cmd("UNLINK").arg(&leases).to_owned();
                self.run_essential(Op::raw("UNLINK", &leases), move |mut c| async move {
                    cmd.query_async::<()>(&mut c.conn).await
                })
                .await?;
            }
            if !values.is_empty() {
                let cmd = redis::cmd("UNLINK").arg(&values).to_owned();
                deleted += self
                    .run_essential(Op::raw("UNLINK", &values), move |mut c| async move {
                        cmd.query_async::<u64>(&mut c.conn).await
                    })
                    .await?;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// Counts values (not leases) under `pattern` with `SCAN`: one round trip
    /// per thousand keys in the database. `SCAN` may return a key twice while
    /// Redis resizes its table, so under heavy churn the count can be slightly high.
    pub async fn count_matching(&self, pattern: &KeyPattern) -> Result<u64, RedisFailure> {
        let (mut cursor, mut count) = (0, 0);
        loop {
            let (next, keys) = self.scan_page(Purpose::Monitoring, pattern, cursor).await?;
            count += keys.iter().filter(|k| !CacheKey::is_lease(k)).count() as u64;
            if next == 0 {
                return Ok(count);
            }
            cursor = next;
        }
    }

    /// `INFO memory` and `INFO keyspace`: one round trip. Memory in use,
    /// `maxmemory`, and keys in all databases.
    pub async fn info(&self) -> Result<(u64, u64, u64), RedisFailure> {
        let mut pipe = Pipeline::with_capacity(2);
        pipe.cmd("INFO").arg("memory").cmd("INFO").arg("keyspace");
        let (memory, keyspace): (String, String) = self
            .run_on(
                Purpose::Monitoring,
                Op::repeated("INFO", 2, &[]),
                move |mut c| async move { pipe.query_async(&mut c.conn).await },
            )
            .await?;
        let field = |text: &str, name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|value| value.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let keys = keyspace
            .lines()
            .filter(|line| line.starts_with("db"))
            .filter_map(|line| {
                line.split_once("keys=")?
                    .1
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        Ok((
            field(&memory, "used_memory"),
            field(&memory, "maxmemory"),
            keys,
        ))
    }

    /// One `PUBLISH` per payload, in order, in one pipeline: one round trip.
    /// Untraced for heartbeats, which no request asked for.
    pub async fn publish_all(
        &self,
        channel: &str,
        payloads: &[String],
        traced: bool,
    ) -> Result<(), RedisFailure> {
        if payloads.is_empty() {
            return Ok(());
        }
        let mut pipe = Pipeline::with_capacity(payloads.len());
        for payload in payloads {
            pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
        }
        let mut op = Op::repeated("PUBLISH", payloads.len(), &[]).target(Target::Channel(channel));
        if !traced {
            op = op.untraced();
        }
        self.run_essential(op, move |mut c| async move {
            pipe.query_async::<()>(&mut c.conn).await
        })
        .await
    }

    /// One `SCAN cursor MATCH pattern COUNT 1000`: the next cursor and a page of keys.
    async fn scan_page(
        &self,
        purpose: Purpose,
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
        let op = Op::new("SCAN", &[]).target(Target::Pattern(pattern.as_str()));
        self.run_on(purpose, op, move |mut c| async move {
            cmd.query_async(&mut c.conn).await
        })
        .await
    }

    async fn run<T, F, Fut>(&self, op: Op<'_>, f: F) -> Result<T, RedisFailure>
    where
        F: FnOnce(Sent) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        self.run_on(Purpose::Guarded, op, f).await
    }

    async fn run_essential<T, F, Fut>(&self, op: Op<'_>, f: F) -> Result<T, RedisFailure>
    where
        F: FnOnce(Sent) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        self.run_on(Purpose::Essential, op, f).await
    }

    /// Tries, once, each command the cache sends on its main connection, on
    /// `probe` (a key under the prefix that no item can have) and `pattern`:
    /// a command the Redis user may not run is then reported at start (see
    /// [`super::Refusals`]) rather than at the first request that needs it.
    /// `PUBLISH` and `SUBSCRIBE` are tried by the publisher's first heartbeat
    /// and by the subscriber. Untraced and kept out of the metrics.
    pub async fn check_permissions(&self, probe: &CacheKey, pattern: &KeyPattern) {
        let lease = probe.lease();
        let checks = [
            ("GET", redis::cmd("GET").arg(probe).to_owned()),
            ("MGET", redis::cmd("MGET").arg(probe).arg(&lease).to_owned()),
            (
                "SET",
                redis::cmd("SET")
                    .arg(probe)
                    .arg("permission check")
                    .arg("PX")
                    .arg(1000)
                    .to_owned(),
            ),
            ("UNLINK", redis::cmd("UNLINK").arg(probe).to_owned()),
            // Only inside the scripts, which run with the user's permissions.
            ("DEL", redis::cmd("DEL").arg(&lease).to_owned()),
            (
                "SCAN",
                redis::cmd("SCAN")
                    .arg(0)
                    .arg("MATCH")
                    .arg(pattern.as_str())
                    .arg("COUNT")
                    .arg(1)
                    .to_owned(),
            ),
        ];
        for (name, cmd) in checks {
            let _ = self
                .run_on(
                    Purpose::Check,
                    Op::new(name, &[]).untraced(),
                    move |mut c| async move { cmd.query_async::<redis::Value>(&mut c.conn).await },
                )
                .await;
        }
        // Loaded first (SCRIPT LOAD) when Redis does not have it yet; run on a
        // lease that nobody holds, it changes nothing.
        let leases = [lease.as_str().as_bytes().to_vec()];
        let invocation = ScriptCall::new(
            &self.release_leases,
            &leases,
            &[b"permission-check".to_vec()],
        );
        let _ = self
            .run_on(
                Purpose::Check,
                Op::new("EVALSHA", &[]).summary("release leases").untraced(),
                move |c| invocation.invoke::<i64>(c),
            )
            .await;
    }

    /// `PING`, outside the round trips of [`RedisCache::round_trips`]: whether
    /// Redis answers right now (and the circuit lets it be asked).
    pub async fn ping(&self) -> bool {
        self.run_on(
            Purpose::Monitoring,
            Op::new("PING", &[]),
            |mut c| async move { redis::cmd("PING").query_async::<String>(&mut c.conn).await },
        )
        .await
        .is_ok()
    }

    /// Runs `f` on the link, in a client span named after the operation, and
    /// records its duration, outcome and the commands it sent.
    async fn run_on<T, F, Fut>(&self, purpose: Purpose, op: Op<'_>, f: F) -> Result<T, RedisFailure>
    where
        F: FnOnce(Sent) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let span = if op.traced {
            // Named after the query summary when there is one, as the
            // conventions ask.
            let server = self.link.server();
            let at = (server.host.as_str(), server.port, server.database.as_str());
            spans::redis_client(op.name, op.summary, op.batch_size(), at)
        } else {
            tracing::Span::none()
        };
        if !span.is_disabled() {
            span.record("db.query.text", op.text());
            if !op.summary.is_empty() {
                span.record("db.query.summary", op.summary);
            }
        }
        // Counted only when the operation is really sent: the link skips it
        // while disconnected or while the circuit is open.
        let round_trips = matches!(purpose, Purpose::Guarded | Purpose::Essential)
            .then(|| self.round_trips.clone());
        let measured = purpose != Purpose::Check;
        let metrics = self.metrics.clone();
        let sends = op.sends.clone();
        let f = move |conn| {
            if let Some(round_trips) = round_trips {
                round_trips.fetch_add(1, Ordering::Relaxed);
            }
            let metrics = measured.then_some(metrics);
            if let Some(metrics) = &metrics {
                metrics.redis_commands(&sends);
            }
            f(Sent { conn, metrics })
        };
        let started = Instant::now();
        let outcome = async {
            match purpose {
                Purpose::Guarded | Purpose::Monitoring | Purpose::Check => self.link.run(f).await,
                Purpose::Essential => self.link.run_essential(f).await,
            }
        }
        .instrument(span.clone())
        .await;
        let refusals = self.link.refusals();
        match &outcome {
            Ok(_) if op.name == "EVALSHA" => refusals.script_ran(op.summary),
            Ok(_) => refusals.accepted(op.sends.iter().map(|(name, _)| *name)),
            Err(RedisFailure::Command(err)) => {
                let sent = op.sends.first().map_or(op.name, |(name, _)| *name);
                refusals.note(sent, op.summary, err);
            }
            Err(_) => {}
        }
        let error = outcome.as_ref().err().map(RedisFailure::kind);
        if let Some(kind) = error {
            spans::failed(&span, kind);
        }
        match &outcome {
            _ if !measured => {}
            // Never sent: counted, not timed (they took no time in Redis).
            Err(failure @ (RedisFailure::Disconnected | RedisFailure::CircuitOpen)) => {
                self.metrics.redis_skipped(failure.kind())
            }
            _ => self
                .metrics
                .db_operation("redis", op.name, error, started.elapsed()),
        }
        outcome
    }
}

/// What an operation runs on: the connection, and the metrics to count a
/// command it had to add (a script Redis had forgotten), if it is counted.
struct Sent {
    conn: MultiplexedConnection,
    metrics: Option<Arc<Metrics>>,
}

/// An `EVALSHA` of one of our scripts. When Redis has forgotten the script
/// (after a restart or `SCRIPT FLUSH`) it is loaded and run again, and both
/// extra commands are counted.
struct ScriptCall {
    script: Arc<Script>,
    cmd: redis::Cmd,
}

impl ScriptCall {
    fn new(script: &Arc<Script>, keys: &[Vec<u8>], args: &[Vec<u8>]) -> Self {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash())
            .arg(keys.len())
            .arg(keys)
            .arg(args);
        ScriptCall {
            script: script.clone(),
            cmd,
        }
    }

    async fn invoke<T: redis::FromRedisValue>(self, mut sent: Sent) -> Result<T, RedisError> {
        match self.cmd.query_async(&mut sent.conn).await {
            Err(err)
                if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                if let Some(metrics) = &sent.metrics {
                    metrics.redis_commands(&[("SCRIPT LOAD", 1), ("EVALSHA", 1)]);
                }
                self.script.load_async(&mut sent.conn).await?;
                self.cmd.query_async(&mut sent.conn).await
            }
            outcome => outcome,
        }
    }
}

/// One Redis operation, as spans and metrics name it.
struct Op<'a> {
    /// `db.operation.name`: the command; `BATCH <command>` for several of
    /// one kind in a pipeline, `PIPELINE` for a mix.
    name: &'static str,
    /// The commands sent, and how many of each.
    sends: Vec<(&'static str, u64)>,
    /// False for background chatter (heartbeats), which gets no span.
    traced: bool,
    /// What it is for, when the command alone does not say (fixed text,
    /// never caller input).
    summary: &'static str,
    target: Target<'a>,
}

enum Target<'a> {
    Cache(&'a [CacheKey]),
    Raw(&'a [Vec<u8>]),
    /// `SCAN … MATCH`.
    Pattern(&'a str),
    /// `PUBLISH`.
    Channel(&'a str),
}

impl<'a> Op<'a> {
    /// One command.
    fn new(name: &'static str, keys: &'a [CacheKey]) -> Self {
        Op {
            name,
            sends: vec![(name, 1)],
            traced: true,
            summary: "",
            target: Target::Cache(keys),
        }
    }

    /// `count` commands `name` in one pipeline.
    fn repeated(name: &'static str, count: usize, keys: &'a [CacheKey]) -> Self {
        Op {
            name: if count == 1 { name } else { batch_name(name) },
            sends: vec![(name, count as u64)],
            ..Op::new(name, keys)
        }
    }

    /// A pipeline of different commands.
    fn pipeline(sends: &[(&'static str, usize)], keys: &'a [CacheKey]) -> Self {
        Op {
            name: "PIPELINE",
            sends: sends.iter().map(|(name, n)| (*name, *n as u64)).collect(),
            ..Op::new("PIPELINE", keys)
        }
    }

    fn raw(name: &'static str, keys: &'a [Vec<u8>]) -> Self {
        Op {
            target: Target::Raw(keys),
            ..Op::new(name, &[])
        }
    }

    fn summary(mut self, summary: &'static str) -> Self {
        self.summary = summary;
        self
    }

    fn target(mut self, target: Target<'a>) -> Self {
        self.target = target;
        self
    }

    fn untraced(mut self) -> Self {
        self.traced = false;
        self
    }

    /// `db.operation.batch.size`: commands sent, when more than one.
    fn batch_size(&self) -> Option<u64> {
        let total = self.sends.iter().map(|(_, n)| n).sum();
        (total > 1).then_some(total)
    }

    /// The command and its first keys, never values: `GET item:1`,
    /// `MGET item:1 item:2 item:3 …(+97)`, `SCAN MATCH item:*`.
    fn text(&self) -> String {
        const SHOWN: usize = 3;
        let (keys, total): (Vec<String>, usize) = match &self.target {
            Target::Cache(keys) => (
                keys.iter().take(SHOWN).map(|k| k.to_string()).collect(),
                keys.len(),
            ),
            Target::Raw(keys) => (
                keys.iter()
                    .take(SHOWN)
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect(),
                keys.len(),
            ),
            Target::Pattern(pattern) => (vec![format!("MATCH {pattern}")], 1),
            Target::Channel(channel) => (vec![(*channel).to_owned()], 1),
        };
        let mut text = self.name.to_owned();
        for key in keys {
            text.push(' ');
            text.push_str(&key);
        }
        if total > SHOWN {
            text.push_str(&format!(" …(+{})", total - SHOWN));
        }
        text
    }
}

/// `BATCH <command>`, as the conventions name a batch of one command.
fn batch_name(command: &'static str) -> &'static str {
    match command {
        "SET" => "BATCH SET",
        "UNLINK" => "BATCH UNLINK",
        "PUBLISH" => "BATCH PUBLISH",
        "INFO" => "BATCH INFO",
        _ => "PIPELINE",
    }
}

/// What an operation is for, which decides whether it goes through the
/// circuit breaker ([`RedisLink::run`]) or past it
/// ([`RedisLink::run_essential`]), and whether it is counted and measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Guarded,
    /// Invalidations: deletes and their `SCAN`s, and publishing.
    Essential,
    /// Guarded, and not on behalf of a request (key counts).
    Monitoring,
    /// Guarded, and kept out of the metrics too, like connection handshakes:
    /// the permission check at start.
    Check,
}

fn is_failed_marker(value: &redis::Value) -> bool {
    matches!(value, redis::Value::BulkString(v) if v == FAILED_MARKER.as_bytes())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether an unleased fill may replace a value already in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    Always,
    /// Warming: never replace what readers have already filled.
    IfAbsent,
}
