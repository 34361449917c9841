//! `TestApp`: the real service on a free port, with its own Redis and its own
//! database, plus typed helpers for every route.

pub mod binary;
pub mod gate;
pub mod proxy;

use std::sync::Arc;

use redis_cache::Application;
use redis_cache::config::{Config, LogFormat};
use redis_cache::items::ItemCatalog;
use redis_cache::telemetry::http_metrics::HttpMetrics;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use gate::FillGate;
pub use proxy::TcpProxy;
pub use test_support::{
    Prometheus, Redis, RedisOptions, eventually, free_port, kill_with_parent, postgres,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one test per backend from an `async fn(Backend)`, so the same
/// API suite runs against SQLite and PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                use $crate::helpers::Backend;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(Backend::Postgres).await;
                }
            }
        )+
    };
}

pub struct TestDatabase {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("items.db").display());
                Self {
                    url,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => Self {
                url: postgres::create_database().await,
                _dir: None,
            },
        }
    }
}

/// A fresh PostgreSQL database behind a [`TcpProxy`] that is cut: the URL
/// given to the service reaches nothing until the proxy is restored.
pub struct UnreachablePostgres {
    pub proxy: TcpProxy,
    pub url: String,
    _database: TestDatabase,
}

impl UnreachablePostgres {
    pub async fn new() -> Self {
        let database = TestDatabase::new(Backend::Postgres).await;
        let port = database
            .url
            .split(':')
            .nth(2)
            .and_then(|rest| rest.split('/').next());
        let port: u16 = port
            .and_then(|p| p.parse().ok())
            .expect("a port in the URL");
        let proxy = TcpProxy::start(port).await;
        proxy.cut();
        let url = database
            .url
            .replace(&format!(":{port}/"), &format!(":{}/", proxy.port()));
        Self {
            proxy,
            url,
            _database: database,
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub redis: Arc<Redis>,
    pub database: Arc<TestDatabase>,
    pub catalog: ItemCatalog,
    /// The HTTP server's metrics (the catalog keeps its own).
    pub http_metrics: Arc<HttpMetrics>,
    pub http: reqwest::Client,
    pub backend: Backend,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

type ConfigTweak = Box<dyn FnOnce(&mut Config) + Send>;

pub struct TestAppBuilder {
    backend: Backend,
    redis: Option<Arc<Redis>>,
    redis_url: Option<String>,
    database: Option<Arc<TestDatabase>>,
    tweaks: Vec<ConfigTweak>,
    wait_for_cache: bool,
}

impl TestAppBuilder {
    /// Adjusts the configuration before the app is built.
    pub fn config(mut self, tweak: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.tweaks.push(Box::new(tweak));
        self
    }

    /// Connects to Redis through `url` (e.g. a [`TcpProxy`]) instead of directly.
    pub fn redis_url(mut self, url: String) -> Self {
        self.redis_url = Some(url);
        self
    }

    /// Uses `redis` (started with special options) instead of a default one.
    pub fn with_redis(mut self, redis: Redis) -> Self {
        self.redis = Some(Arc::new(redis));
        self
    }

    /// Uses an existing Redis and database (another process's, say) instead
    /// of fresh ones.
    pub fn on(mut self, redis: Arc<Redis>, database: Arc<TestDatabase>) -> Self {
        self.redis = Some(redis);
        self.database = Some(database);
        self
    }

    /// Turns the near cache (L1) off, for tests that change what Redis holds
    /// behind the service's back and look at how it reads Redis itself.
    pub fn without_l1(self) -> Self {
        self.config(|c| c.cache.l1.capacity = 0)
    }

    /// Returns as soon as the app serves HTTP, without waiting for Redis.
    pub fn without_waiting_for_cache(mut self) -> Self {
        self.wait_for_cache = false;
        self
    }

    pub async fn spawn(self) -> TestApp {
        if std::env::var_os("TEST_LOG").is_some() {
            std::mem::forget(redis_cache::telemetry::init(LogFormat::Pretty));
        }
        let redis = self.redis.unwrap_or_else(|| Arc::new(Redis::start()));
        let database = match self.database {
            Some(db) => db,
            None => Arc::new(TestDatabase::new(self.backend).await),
        };
        let redis_url = self.redis_url.unwrap_or_else(|| redis.url());
        let instance = format!("test-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let mut config = test_support::service::config(&[
            "--bind-addr=127.0.0.1".to_owned(),
            "--server-port=0".to_owned(),
            format!("--redis-url={redis_url}"),
            format!("--database-url={}", database.url),
            format!("--instance-id={instance}"),
            // Generous: tests run in parallel on small machines, and a
            // spurious timeout changes the path a lookup takes. Tests of
            // timeouts set their own. A lease outlives the longest load
            // these allow (source timeout + 2 × Redis timeout), as the
            // service requires.
            "--redis-timeout=1s".to_owned(),
            "--source-timeout=2s".to_owned(),
            "--lease-ttl=4s".to_owned(),
            // Many tests share one PostgreSQL cluster.
            "--database-max-connections=5".to_owned(),
            // Tests of the polled gauges need not wait 15 s for a look.
            "--redis-info-interval=1s".to_owned(),
        ]);
        for tweak in self.tweaks {
            tweak(&mut config);
        }
        let app = Application::build(config)
            .await
            .expect("application builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let catalog = app.catalog().clone();
        let http_metrics = app.http_metrics().clone();
        let (tx, rx) = oneshot::channel();
        let server = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        let test_app = TestApp {
            address,
            redis,
            database,
            catalog,
            http_metrics,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            backend: self.backend,
            shutdown: Some(tx),
            server: Some(server),
        };
        if self.wait_for_cache {
            test_app.wait_until_cache_ready().await;
        }
        test_app
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::builder(backend).spawn().await
    }

    pub fn builder(backend: Backend) -> TestAppBuilder {
        TestAppBuilder {
            backend,
            redis: None,
            redis_url: None,
            database: None,
            tweaks: Vec::new(),
            wait_for_cache: true,
        }
    }

    /// Another instance of the service on the same Redis and database.
    pub fn peer(&self) -> TestAppBuilder {
        TestAppBuilder {
            backend: self.backend,
            redis: Some(self.redis.clone()),
            redis_url: None,
            database: Some(self.database.clone()),
            tweaks: Vec::new(),
            wait_for_cache: true,
        }
    }

    pub fn port(&self) -> u16 {
        self.address.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Waits until Redis is connected and the invalidation subscriber is
    /// subscribed, as reported by `/health`.
    pub async fn wait_until_cache_ready(&self) {
        eventually("redis connected and subscriber subscribed", || async {
            let (_, body) = self.health().await;
            body["redis"] == "connected" && body["subscriber"] == "subscribed"
        })
        .await;
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// A request with one extra header, e.g. `If-Match`, and an optional JSON body.
    pub async fn send_with(
        &self,
        method: reqwest::Method,
        path: &str,
        header: (&str, &str),
        json: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .request(method, self.url(path))
            .header(header.0, header.1);
        if let Some(json) = json {
            request = request.json(&json);
        }
        request.send().await.unwrap()
    }

    pub async fn get_item(&self, id: &str) -> reqwest::Response {
        self.get(&format!("/items/{id}")).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn create(&self, body: Value) -> reqwest::Response {
        self.post("/items", &body).await
    }

    /// Creates an item and asserts it was created.
    pub async fn create_ok(&self, id: &str, name: &str) -> Value {
        let response = self
            .create(
                json!({ "id": id, "name": name, "price": 10.5, "category": "Test", "stock": 3 }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    pub async fn put(&self, id: &str, body: Value) -> reqwest::Response {
        self.http
            .put(self.url(&format!("/items/{id}")))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, id: &str) -> reqwest::Response {
        self.http
            .delete(self.url(&format!("/items/{id}")))
            .send()
            .await
            .unwrap()
    }

    pub async fn batch(&self, ids: &[&str]) -> reqwest::Response {
        self.post("/items/batch", &json!({ "ids": ids })).await
    }

    pub async fn invalidate(&self, body: Value) -> reqwest::Response {
        self.post("/cache/invalidate", &body).await
    }

    pub async fn stats(&self) -> Value {
        let response = self.get("/stats").await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// One counter from `/stats`.
    pub async fn stat(&self, name: &str) -> u64 {
        self.stats().await[name]
            .as_u64()
            .unwrap_or_else(|| panic!("no counter {name} in /stats"))
    }

    /// Starts a `GET /items/{id}` in the background; yields its status, its
    /// `X-Cache-Status` and its JSON body.
    pub fn spawn_get(&self, id: &str) -> JoinHandle<(StatusCode, String, Value)> {
        let (http, url) = (self.http.clone(), self.url(&format!("/items/{id}")));
        tokio::spawn(async move {
            let response = http.get(url).send().await.unwrap();
            let status = response.status();
            let cache = header(&response, "x-cache-status")
                .unwrap_or_default()
                .to_owned();
            (status, cache, response.json().await.unwrap_or_default())
        })
    }

    pub async fn health(&self) -> (StatusCode, Value) {
        let response = self.get("/health").await;
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    /// Raw value of a key in the test Redis.
    pub async fn redis_get(&self, key: &str) -> Option<String> {
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.redis.conn().await)
            .await
            .unwrap()
    }

    pub async fn redis_set(&self, key: &str, value: &str) {
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async::<()>(&mut self.redis.conn().await)
            .await
            .unwrap();
    }

    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub fn server_handle(&mut self) -> JoinHandle<anyhow::Result<()>> {
        self.server.take().unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.trigger_shutdown();
    }
}

/// The sum of every sample of `name` in a Prometheus exposition whose
/// labels include all of `labels` (as printed: `error_type="storage"`).
pub fn sum_of(exposition: &str, name: &str, labels: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            series.split('{').next() == Some(name) && labels.iter().all(|l| series.contains(l))
        })
        .map(|(_, value)| value.parse::<f64>().unwrap())
        .sum()
}

/// Publishes `message` on the invalidation channel of `app`'s Redis, as
/// another instance (or a plain `PUBLISH`) would.
pub async fn publish(app: &TestApp, message: Value) {
    redis::cmd("PUBLISH")
        .arg("cache:invalidate")
        .arg(message.to_string())
        .query_async::<i64>(&mut app.redis.conn().await)
        .await
        .unwrap();
}

pub async fn body(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

pub fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}
