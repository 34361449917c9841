//! A [`Catalog`] with its background tasks running: what a program that
//! caches with this crate starts once, uses, and stops.
//!
//! [`Engine::start`] tries Redis once (the engine starts without it and
//! serves from the source of truth until Redis answers), then starts:
//! - the link's maintenance: reconnecting with bounded backoff, pinging a
//!   healthy connection (`cache::RedisLink::maintain`);
//! - the deferred invalidations' retries (`Catalog::retry_deferred`);
//! - a watch of the link, telling the catalog when it goes down or comes
//!   back, and checking Redis permissions on the first connection;
//! - the publisher of this instance's invalidations and the subscriber to
//!   everyone's (the channel [`crate::invalidation::CHANNEL`]);
//! - optionally, a poll of Redis for its memory and keys, and warming.
//!
//! [`Engine::shutdown`] lets writes still running finish, applies the
//! deferred invalidations once more, and stops every task, each step
//! bounded.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::breaker::Breaker;
use crate::cache::{LinkState, RedisCache, RedisLink};
use crate::catalog::{CacheConfig, Catalog, Source};
use crate::invalidation::{CHANNEL, Subscriber, SubscriberState};
use crate::telemetry::metrics::Metrics;

/// Redis, as the engine uses it.
#[derive(Clone)]
pub struct RedisSettings {
    pub client: redis::Client,
    /// The server as logs may show it (never its credentials).
    pub display: String,
    /// Longest a command may take before it counts as a failure (and the
    /// lookup bypasses Redis).
    pub timeout: Duration,
    /// How often an idle connection is pinged; the subscription is pinged
    /// at half of it.
    pub health_interval: Duration,
    /// Failures in a row that open the breaker in front of Redis (0: no
    /// breaker), and how long it stays open before a probe.
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
}

impl RedisSettings {
    /// Redis at `client`, with the service's defaults: 250 ms commands, a
    /// ping every second, a breaker opened by 5 failures in a row for 5 s.
    pub fn new(client: redis::Client, display: impl Into<String>) -> Self {
        Self {
            client,
            display: display.into(),
            timeout: Duration::from_millis(250),
            health_interval: Duration::from_secs(1),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(5),
        }
    }
}

/// A running catalog and its background tasks.
pub struct Engine<S: Source> {
    catalog: Catalog<S>,
    subscriber: watch::Receiver<SubscriberState>,
    /// Stops the background tasks.
    background: CancellationToken,
    tasks: TaskTracker,
}

impl<S: Source> Engine<S> {
    /// Builds the catalog over `source` and Redis, and starts its
    /// background tasks (see the module's documentation). `instance` names
    /// this process on the invalidation channel (unique per process);
    /// `poll_redis` is how often Redis is polled for `/metrics`, if at all.
    pub async fn start(
        source: S,
        redis: RedisSettings,
        config: &CacheConfig,
        instance: &str,
        poll_redis: Option<Duration>,
    ) -> Self {
        let breaker = Breaker::new("redis", redis.breaker_failures, redis.breaker_cooldown);
        let link = RedisLink::new(
            redis.client.clone(),
            redis.timeout,
            redis.health_interval,
            breaker,
        );
        let connected = link.connect_once().await;
        match &connected {
            Ok(()) => tracing::info!(redis = %redis.display, "redis connected"),
            Err(err) => tracing::warn!(
                redis = %redis.display,
                error = %err,
                "redis unavailable at start; serving from the source of truth until it is reachable"
            ),
        }
        let metrics = Arc::new(Metrics::default());
        let l2 = RedisCache::new(link.clone(), metrics.clone());
        let catalog = Catalog::new(source, l2.clone(), config, instance, metrics);

        let background = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(link.clone().maintain(background.clone()));
        tasks.spawn(catalog.clone().retry_deferred(background.clone()));
        tasks.spawn(watch_link(
            catalog.clone(),
            connected.is_ok(),
            background.clone(),
        ));
        if let Some(interval) = poll_redis.filter(|every| !every.is_zero()) {
            tasks.spawn(catalog.clone().poll_redis(interval, background.clone()));
        }
        if let Some(outbox) = catalog.take_outbox() {
            tasks.spawn(outbox.run(l2, CHANNEL, background.clone()));
        }
        if connected.is_ok() {
            // Before serving: a missing permission is reported at start.
            check_permissions(&catalog).await;
        }
        let subscriber = Subscriber::new(
            redis.client,
            catalog.clone(),
            link.refusals().clone(),
            link.connect_timeout(),
            redis.health_interval / 2,
        );
        let subscriber_state = subscriber.watch_state();
        tasks.spawn(subscriber.run(background.clone()));
        if config.warm_on_start > 0 {
            let (catalog, limit) = (catalog.clone(), config.warm_on_start);
            tasks.spawn(async move {
                match catalog.warm(limit).await {
                    Ok(warmed) => tracing::info!(
                        read = warmed.read,
                        loaded = warmed.loaded,
                        "cache warmed at start"
                    ),
                    Err(err) => tracing::warn!(error = %err, "cache warming at start failed"),
                }
            });
        }
        Self {
            catalog,
            subscriber: subscriber_state,
            background,
            tasks,
        }
    }

    pub fn catalog(&self) -> &Catalog<S> {
        &self.catalog
    }

    /// The invalidation subscriber's state, as it changes.
    pub fn subscriber(&self) -> watch::Receiver<SubscriberState> {
        self.subscriber.clone()
    }

    /// Lets writes still running finish, applies the deferred invalidations
    /// once more, and stops the background tasks, each step within `limit`;
    /// what could not be done in time is logged.
    pub async fn shutdown(self, limit: Duration) {
        if !self.catalog.finish_writes(limit).await {
            tracing::warn!("writes still running at shutdown");
        }
        let flush = self.catalog.apply_deferred_once();
        if !matches!(tokio::time::timeout(limit, flush).await, Ok(true)) {
            tracing::warn!(
                deferred = self.catalog.deferred().len(),
                "deferred invalidations not applied before exit; they expire with the TTL"
            );
        }
        self.background.cancel();
        self.tasks.close();
        if tokio::time::timeout(limit, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop in time");
        }
    }
}

/// Tries every command the cache needs on Redis and says which the Redis
/// user may not run (see [`crate::cache::Refusals`]).
async fn check_permissions<S: Source>(catalog: &Catalog<S>) {
    let prefix = catalog.prefix();
    catalog
        .l2()
        .check_permissions(&prefix.permission_probe(), &prefix.everything())
        .await;
    let refused = catalog.l2().link().refusals().list();
    if refused.is_empty() {
        tracing::info!("redis permissions checked: every command the cache uses is allowed");
    }
}

/// Tells the catalog whenever the shared Redis connection goes down or comes
/// back (the near cache depends on it), until `cancel` fires. Checks Redis
/// permissions on the first connection, unless start-up did.
async fn watch_link<S: Source>(catalog: Catalog<S>, mut checked: bool, cancel: CancellationToken) {
    let mut state = catalog.l2().link().watch_state();
    loop {
        let connected = *state.borrow_and_update() == LinkState::Connected;
        catalog.on_link_state(connected);
        if connected && !checked {
            checked = true;
            check_permissions(&catalog).await;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = state.changed() => if changed.is_err() { return },
        }
    }
}
