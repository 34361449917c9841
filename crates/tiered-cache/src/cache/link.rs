//! The shared Redis connection: one multiplexed connection that a background
//! task replaces when it breaks, so requests never wait on a reconnect.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::refusals::{self, Refusals};
use crate::backoff::Backoff;
use crate::breaker::{Breaker, CircuitState};

/// Longest wait before the next reconnect attempt once an invalidation is
/// waiting for the connection.
const URGENT_RECONNECT: Duration = Duration::from_millis(100);
/// Consecutive failed health checks after which the connection is replaced.
const MAX_FAILED_CHECKS: u32 = 2;

/// Where Redis is, as spans name it (`server.address`, `server.port`,
/// `db.namespace`). Never the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub host: String,
    /// `None` for a Unix socket.
    pub port: Option<i64>,
    /// The database number.
    pub database: String,
}

impl Server {
    fn of(client: &Client) -> Self {
        let info = client.get_connection_info();
        let (host, port) = match info.addr() {
            redis::ConnectionAddr::Tcp(host, port)
            | redis::ConnectionAddr::TcpTls { host, port, .. } => {
                (host.clone(), Some(i64::from(*port)))
            }
            redis::ConnectionAddr::Unix(path) => (path.display().to_string(), None),
            #[allow(unreachable_patterns)]
            _ => (String::new(), None),
        };
        Server {
            host,
            port,
            database: info.redis_settings().db().to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Connected,
    Disconnected,
}

/// Why Redis could not be used for one operation. Callers degrade (bypass the
/// cache) on every variant; none of them is ever shown to a client.
#[derive(Debug, thiserror::Error)]
pub enum RedisFailure {
    #[error("not connected to redis")]
    Disconnected,
    #[error("redis circuit breaker is open")]
    CircuitOpen,
    #[error("redis did not answer within the command timeout")]
    Timeout,
    #[error("redis command failed")]
    Command(#[source] RedisError),
}

impl RedisFailure {
    /// A short, bounded name for metrics and spans (`error.type`).
    pub fn kind(&self) -> &'static str {
        match self {
            RedisFailure::Disconnected => "disconnected",
            RedisFailure::CircuitOpen => "circuit_open",
            RedisFailure::Timeout => "timeout",
            RedisFailure::Command(err) if refusals::is_permanent(err) => "refused",
            RedisFailure::Command(_) => "command",
        }
    }
}

/// Cheap to clone; all clones share one connection.
#[derive(Clone)]
pub struct RedisLink {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    server: Server,
    /// Skips Redis for a while after repeated timeouts (see [`Breaker`]).
    breaker: Breaker,
    command_timeout: Duration,
    health_interval: Duration,
    connect_timeout: Duration,
    /// The live connection, if any. A plain `RwLock` is enough: it is held only
    /// to clone or swap the handle, never across an `.await`.
    slot: RwLock<Slot>,
    /// Signalled by a request that saw the connection break, so the maintenance
    /// task replaces it at once instead of at its next health check.
    broken: Notify,
    /// Commands Redis refuses for good (ACL, disabled commands), shared
    /// with every operation and the subscriber.
    refusals: Arc<Refusals>,
    /// Signalled by an invalidation that found no connection: the
    /// maintenance task cuts its reconnect backoff short.
    wanted: Notify,
    state: watch::Sender<LinkState>,
}

struct Slot {
    /// Bumped on every new connection, so a late error from an old connection
    /// cannot tear down its replacement.
    generation: u64,
    conn: Option<MultiplexedConnection>,
}

impl RedisLink {
    /// `health_interval`: how often an idle, healthy connection is checked
    /// with `PING` (`REDIS_HEALTH_INTERVAL`). A connection that silently died
    /// (network cut, no RST) is replaced within about two of these intervals.
    pub fn new(
        client: Client,
        command_timeout: Duration,
        health_interval: Duration,
        breaker: Breaker,
    ) -> Self {
        let (state, _) = watch::channel(LinkState::Disconnected);
        Self {
            inner: Arc::new(Inner {
                server: Server::of(&client),
                client,
                breaker,
                command_timeout,
                health_interval,
                connect_timeout: (command_timeout * 4).max(Duration::from_secs(1)),
                slot: RwLock::new(Slot {
                    generation: 0,
                    conn: None,
                }),
                broken: Notify::new(),
                refusals: Arc::default(),
                wanted: Notify::new(),
                state,
            }),
        }
    }

    pub fn server(&self) -> &Server {
        &self.inner.server
    }

    pub fn refusals(&self) -> &Arc<Refusals> {
        &self.inner.refusals
    }

    pub fn connect_timeout(&self) -> Duration {
        self.inner.connect_timeout
    }

    pub fn state(&self) -> LinkState {
        *self.inner.state.borrow()
    }

    pub fn watch_state(&self) -> watch::Receiver<LinkState> {
        self.inner.state.subscribe()
    }

    pub fn circuit(&self) -> CircuitState {
        self.inner.breaker.state()
    }

    /// Whether an operation would be attempted right now (connected, circuit
    /// not open). A hint for skipping optional work, not a promise.
    pub fn usable(&self) -> bool {
        self.state() == LinkState::Connected && self.circuit() != CircuitState::Open
    }

    /// Runs one operation (a command or a pipeline) on the shared connection,
    /// bounded by the command timeout. Fails fast when there is no connection
    /// or the circuit breaker is open.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, RedisFailure>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let attempt = self
            .inner
            .breaker
            .allow()
            .ok_or(RedisFailure::CircuitOpen)?;
        // Without a connection there is no verdict: dropping the attempt
        // hands a probe over to the next caller.
        let (generation, conn) = self.current().ok_or(RedisFailure::Disconnected)?;
        let outcome = self.execute(generation, conn, op).await;
        match &outcome {
            Ok(_) => attempt.succeeded(),
            // Refused, but answered: Redis is there.
            Err(RedisFailure::Command(err)) if !breaks_connection(err) => attempt.succeeded(),
            Err(_) => attempt.failed(),
        }
        outcome
    }

    /// Like [`RedisLink::run`], but past an open circuit breaker, and without
    /// counting towards it: for invalidations, which keep a committed write
    /// from hiding behind an older cached value. The breaker saves reads a
    /// timeout each; a write can afford one to stay correct. Without a
    /// connection, asks for a reconnect without waiting out the backoff.
    pub async fn run_essential<T, F, Fut>(&self, op: F) -> Result<T, RedisFailure>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let Some((generation, conn)) = self.current() else {
            self.inner.wanted.notify_one();
            return Err(RedisFailure::Disconnected);
        };
        self.execute(generation, conn, op).await
    }

    async fn execute<T, F, Fut>(
        &self,
        generation: u64,
        conn: MultiplexedConnection,
        op: F,
    ) -> Result<T, RedisFailure>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        match tokio::time::timeout(self.inner.command_timeout, op(conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                if breaks_connection(&err) {
                    self.mark_broken(generation);
                }
                Err(RedisFailure::Command(err))
            }
            Err(_elapsed) => Err(RedisFailure::Timeout),
        }
    }

    /// Makes one connection attempt now. Used at start-up so the first requests
    /// find the cache ready; failure is not fatal, the maintenance task retries.
    pub async fn connect_once(&self) -> Result<(), RedisError> {
        let conn = self.open().await?;
        self.install(conn);
        Ok(())
    }

    /// Keeps the connection alive until `cancel` fires: reconnects with backoff
    /// while down, and health-checks while up.
    pub async fn maintain(self, cancel: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        let mut failed_checks = 0;
        let mut attempts_while_down = 0u64;
        loop {
            let delay = match self.current() {
                None => match self.open().await {
                    Ok(conn) => {
                        self.install(conn);
                        backoff.reset();
                        attempts_while_down = 0;
                        continue;
                    }
                    Err(err) => {
                        attempts_while_down += 1;
                        tracing::debug!(error = %err, attempt = attempts_while_down, "redis connect attempt failed");
                        backoff.next_delay()
                    }
                },
                Some((generation, conn)) => {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = self.inner.broken.notified() => continue,
                        _ = tokio::time::sleep(self.inner.health_interval) => {}
                    }
                    if self.health_check(generation, conn).await {
                        failed_checks = 0;
                    } else {
                        failed_checks += 1;
                        if failed_checks >= MAX_FAILED_CHECKS {
                            failed_checks = 0;
                            self.mark_broken(generation);
                        }
                    }
                    continue;
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
                // Not at once: a burst of writes during an outage must not
                // turn into a burst of connection attempts.
                _ = self.inner.wanted.notified() => {
                    tokio::time::sleep(delay.min(URGENT_RECONNECT)).await;
                }
            }
        }
    }

    /// `PING` on the connection. While the circuit is open, a check after the
    /// cooldown is the breaker's trial: a Redis that answers again closes
    /// the circuit without waiting for a request to try it.
    async fn health_check(&self, generation: u64, mut conn: MultiplexedConnection) -> bool {
        let trial = match self.circuit() {
            CircuitState::Closed => None,
            _ => self.inner.breaker.allow(),
        };
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        let answered = tokio::time::timeout(self.inner.connect_timeout, ping).await;
        if let Some(trial) = trial {
            match &answered {
                Ok(Ok(_)) => trial.succeeded(),
                _ => trial.failed(),
            }
        }
        match answered {
            Ok(Ok(_)) => true,
            // Refused (no +ping), but answered: Redis is there.
            Ok(Err(err)) if self.inner.refusals.note("PING", "", &err) => true,
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "redis health check failed");
                if breaks_connection(&err) {
                    self.mark_broken(generation);
                }
                false
            }
            Err(_) => {
                tracing::debug!("redis health check timed out");
                false
            }
        }
    }

    async fn open(&self) -> Result<MultiplexedConnection, RedisError> {
        // No response timeout of redis-rs's own (500 ms by default): every
        // command is bounded by `REDIS_TIMEOUT` in `execute`, which leaves the
        // connection up. redis-rs's would cut a slow reply short, whatever
        // `REDIS_TIMEOUT` says, with an I/O error that marks the connection
        // broken, failing every command in flight on it.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.inner.connect_timeout))
            .set_response_timeout(None);
        self.inner
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        let slot = self.inner.slot.read().unwrap_or_else(|e| e.into_inner());
        slot.conn.clone().map(|c| (slot.generation, c))
    }

    fn install(&self, conn: MultiplexedConnection) {
        {
            let mut slot = self.inner.slot.write().unwrap_or_else(|e| e.into_inner());
            slot.generation += 1;
            slot.conn = Some(conn);
        }
        let was = self.inner.state.send_replace(LinkState::Connected);
        if was != LinkState::Connected {
            tracing::info!("redis connected; caching enabled");
        }
    }

    fn mark_broken(&self, generation: u64) {
        let dropped = {
            let mut slot = self.inner.slot.write().unwrap_or_else(|e| e.into_inner());
            if slot.generation == generation && slot.conn.is_some() {
                slot.conn = None;
                true
            } else {
                false
            }
        };
        if dropped {
            self.inner.state.send_replace(LinkState::Disconnected);
            tracing::warn!(
                "redis connection lost; answering from the source of truth until it is back"
            );
            self.inner.broken.notify_one();
        }
    }
}

/// Errors after which the connection cannot be trusted any more. Most
/// server-side errors (`WRONGTYPE`, `NOSCRIPT`, `OOM`, ...) leave it perfectly
/// usable; but `READONLY` and `MASTERDOWN` mean the server behind the address is
/// (no longer) a usable primary, as after a failover that moved a DNS name, and
/// `LOADING` means it restarted: a new connection may reach the right server.
fn breaks_connection(err: &RedisError) -> bool {
    err.is_connection_dropped()
        || err.is_io_error()
        || err.is_unrecoverable_error()
        || matches!(err.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
}
