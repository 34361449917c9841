//! `Application`: builds every part from a [`Config`], binds the listener and
//! runs until a shutdown future resolves. `main` and the tests both start the
//! service through here.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cache::{Breaker, LinkState, RedisCache, RedisLink};
use crate::config::Config;
use crate::http::server::{self, ServerLimits};
use crate::http::{self, AppState};
use crate::invalidation::Subscriber;
use crate::items::ItemCatalog;
use crate::store::{FirstStart, Store};
use crate::telemetry::http_metrics::HttpMetrics;
use crate::telemetry::metrics::Metrics;
use std::sync::Arc;

/// How long background tasks get to stop once HTTP has drained.
const BACKGROUND_STOP_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    limits: ServerLimits,
    catalog: ItemCatalog,
    /// The HTTP server's metrics, counted by the accept loop too.
    http_metrics: Arc<HttpMetrics>,
    shutdown_delay: Duration,
    shutdown_grace: Duration,
    /// Cancelled when shutdown begins (shared with `/readyz`).
    draining: CancellationToken,
    /// Cancelled once HTTP has drained; stops the background tasks.
    background: CancellationToken,
    tasks: TaskTracker,
}

impl Application {
    /// Connects to the database (running migrations), tries Redis once (the
    /// service starts without it), starts the background tasks and binds the
    /// HTTP listener. Port 0 picks a free port; see [`Application::port`].
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // rustls needs one process-wide crypto provider for rediss:// and
        // TLS to PostgreSQL; a second install (tests) is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();

        let store = Store::connect(
            &config.database.url,
            config.database.max_connections,
            config.cache.source_timeout,
        )
        .await?;
        tracing::info!(database = %config.database.url, "source of truth ready");
        if let FirstStart::Yes { demo_items } = store
            .initialize(config.database.demo_data)
            .await
            .context("cannot initialise the database")?
        {
            tracing::info!(demo_items, "first start: database initialised");
        }

        let client = config.redis.client().context("invalid Redis settings")?;
        let breaker = Breaker::new(
            "redis",
            config.redis.breaker_failures,
            config.redis.breaker_cooldown,
        );
        let link = RedisLink::new(
            client.clone(),
            config.redis.timeout,
            config.redis.health_interval,
            breaker,
        );
        let connected = link.connect_once().await;
        match &connected {
            Ok(()) => tracing::info!(redis = %config.redis.target, "redis connected"),
            Err(err) => tracing::warn!(
                redis = %config.redis.target,
                error = %err,
                "redis unavailable at start; serving from the source of truth until it is reachable"
            ),
        }
        let metrics = Arc::new(Metrics::default());
        let l2 = RedisCache::new(link.clone(), metrics.clone());
        let catalog = ItemCatalog::new(
            store,
            l2.clone(),
            &config.cache,
            &config.instance_id,
            metrics,
        );

        let background = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(link.clone().maintain(background.clone()));
        tasks.spawn(catalog.clone().retry_deferred(background.clone()));
        tasks.spawn(watch_link(
            catalog.clone(),
            connected.is_ok(),
            background.clone(),
        ));
        if !config.redis_info_interval.is_zero() {
            tasks.spawn(
                catalog
                    .clone()
                    .poll_redis(config.redis_info_interval, background.clone()),
            );
        }
        if let Some(outbox) = catalog.take_outbox() {
            tasks.spawn(outbox.run(l2.clone(), crate::invalidation::CHANNEL, background.clone()));
        }
        if connected.is_ok() {
            // Before serving: a missing permission is reported at start.
            check_permissions(&catalog).await;
        }
        let subscriber = Subscriber::new(
            client,
            catalog.clone(),
            link.refusals().clone(),
            link.connect_timeout(),
            config.redis.health_interval / 2,
        );
        let subscriber_state = subscriber.watch_state();
        tasks.spawn(subscriber.run(background.clone()));
        if config.cache.warm_on_start > 0 {
            let catalog = catalog.clone();
            let limit = config.cache.warm_on_start;
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

        let draining = CancellationToken::new();
        let http_metrics = Arc::new(HttpMetrics::default());
        let router = http::router(AppState {
            catalog: catalog.clone(),
            metrics: http_metrics.clone(),
            subscriber: subscriber_state,
            admin_token: config.http.admin_token.clone(),
            batch_max_ids: config.http.batch_max_ids,
            draining: draining.clone(),
        });
        let listener = TcpListener::bind(config.http.bind)
            .await
            .with_context(|| format!("cannot listen on {}", config.http.bind))?;
        let mut limits = config.http.limits;
        limits.max_connections = server::fit_to_descriptors(
            limits.max_connections,
            reserved_descriptors(config.database.max_connections),
        );
        if limits.max_connections < config.http.limits.max_connections {
            tracing::warn!(
                max_connections = limits.max_connections,
                "HTTP_MAX_CONNECTIONS lowered to fit the open-file limit (ulimit -n)"
            );
        }
        Ok(Self {
            listener,
            router,
            limits,
            catalog,
            http_metrics,
            shutdown_delay: config.http.shutdown_delay,
            shutdown_grace: config.http.shutdown_grace,
            draining,
            background,
            tasks,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn catalog(&self) -> &ItemCatalog {
        &self.catalog
    }

    /// The HTTP server's metrics (the catalog has its own).
    pub fn http_metrics(&self) -> &Arc<HttpMetrics> {
        &self.http_metrics
    }

    /// Serves until `shutdown` resolves; then reports not-ready for the
    /// shutdown delay, stops accepting connections, gives in-flight requests up
    /// to the grace period, applies what it can of deferred invalidations and
    /// stops the background tasks.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(address = %self.local_addr(), instance = self.catalog.instance(), "listening");
        let closing = CancellationToken::new();
        tokio::spawn({
            let (draining, closing, delay) =
                (self.draining.clone(), closing.clone(), self.shutdown_delay);
            async move {
                shutdown.await;
                draining.cancel();
                tokio::time::sleep(delay).await;
                closing.cancel();
            }
        });
        let serve = server::serve(
            self.listener,
            self.router,
            self.limits,
            self.http_metrics,
            closing.clone(),
        );
        let grace = self.shutdown_grace;
        let deadline = async {
            closing.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            () = serve => {}
            _ = deadline => tracing::warn!(
                grace = %humantime::format_duration(grace),
                "grace period over with requests still in flight; closing them"
            ),
        }
        if !self.catalog.finish_writes(BACKGROUND_STOP_TIMEOUT).await {
            tracing::warn!("writes still running at shutdown");
        }
        let flush = self.catalog.apply_deferred_once();
        if !matches!(
            tokio::time::timeout(BACKGROUND_STOP_TIMEOUT, flush).await,
            Ok(true)
        ) {
            tracing::warn!(
                deferred = self.catalog.deferred().len(),
                "deferred invalidations not applied before exit; they expire with the TTL"
            );
        }
        self.background.cancel();
        self.tasks.close();
        if tokio::time::timeout(BACKGROUND_STOP_TIMEOUT, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop in time");
        }
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Descriptors kept for everything but HTTP connections: the database pool
/// (a SQLite connection holds the database, its log and its shared memory),
/// Redis, the listener, logs, and some slack.
fn reserved_descriptors(database_connections: u32) -> usize {
    64 + 3 * database_connections as usize
}

/// Tries every command the cache needs on Redis and says which the Redis
/// user may not run (see [`crate::cache::Refusals`]).
async fn check_permissions(catalog: &ItemCatalog) {
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

/// Tells the catalogue whenever the shared Redis connection goes down or
/// comes back (the near cache depends on it), until `cancel` fires. Checks
/// Redis permissions on the first connection, unless start-up did.
async fn watch_link(catalog: ItemCatalog, mut checked: bool, cancel: CancellationToken) {
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
