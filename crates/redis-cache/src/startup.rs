//! `Application`: builds every part from a [`Config`], binds the listener and
//! runs until a shutdown future resolves. `main` and the tests both start the
//! service through here.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use tiered_cache::{Engine, RedisSettings};

use crate::config::Config;
use crate::http::server::{self, ServerLimits};
use crate::http::{self, AppState};
use crate::items::ItemCatalog;
use crate::store::{FirstStart, Store};
use crate::telemetry::http_metrics::HttpMetrics;
use std::sync::Arc;

/// How long background tasks get to stop once HTTP has drained.
const BACKGROUND_STOP_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    limits: ServerLimits,
    /// The HTTP server's metrics, counted by the accept loop too.
    http_metrics: Arc<HttpMetrics>,
    shutdown_delay: Duration,
    shutdown_grace: Duration,
    /// Cancelled when shutdown begins (shared with `/readyz`).
    draining: CancellationToken,
    /// The cache engine's background tasks, stopped once HTTP has drained.
    engine: Engine<Store>,
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
        let redis = RedisSettings {
            client,
            display: config.redis.target.to_string(),
            timeout: config.redis.timeout,
            health_interval: config.redis.health_interval,
            breaker_failures: config.redis.breaker_failures,
            breaker_cooldown: config.redis.breaker_cooldown,
        };
        let poll = Some(config.redis_info_interval);
        let engine = Engine::start(store, redis, &config.cache, &config.instance_id, poll).await;
        let draining = CancellationToken::new();
        let http_metrics = Arc::new(HttpMetrics::default());
        let router = http::router(AppState {
            catalog: engine.catalog().clone(),
            metrics: http_metrics.clone(),
            subscriber: engine.subscriber(),
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
            http_metrics,
            shutdown_delay: config.http.shutdown_delay,
            shutdown_grace: config.http.shutdown_grace,
            draining,
            engine,
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
        self.engine.catalog()
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
        tracing::info!(address = %self.local_addr(), instance = self.engine.catalog().instance(), "listening");
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
        self.engine.shutdown(BACKGROUND_STOP_TIMEOUT).await;
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
