//! The service, `redis-cache`, in this process: its configuration made by
//! its real command line (production defaults, the same validation), with a
//! test's flags on top, and the server running until stopped or dropped.

use clap::{CommandFactory, FromArgMatches};
use redis_cache::{Application, Cli, Config};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The configuration `redis-cache <flags>` runs with. Environment variables
/// are ignored, so a developer's `REDIS_URL` or `CACHE_TTL` cannot leak into
/// a test; everything else (defaults, parsing, validation) is production's.
/// Panics on flags the service would refuse, with its own message.
pub fn config<S: AsRef<str>>(flags: &[S]) -> Config {
    let command = Cli::command().mut_args(|arg| arg.env(None));
    let argv = std::iter::once("redis-cache").chain(flags.iter().map(AsRef::as_ref));
    let matches = command
        .try_get_matches_from(argv)
        .unwrap_or_else(|e| panic!("redis-cache refuses these flags: {e}"));
    let cli = Cli::from_arg_matches(&matches).expect("parsed flags make a Cli");
    Config::from_cli(cli).unwrap_or_else(|e| panic!("redis-cache refuses this configuration: {e}"))
}

/// A running service on a free port of 127.0.0.1.
pub struct Service {
    port: u16,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Starts the service on `redis_url` and a SQLite file of its own, with
    /// `flags` on top (a `--database-url` among them wins).
    pub async fn start(redis_url: &str, flags: &[&str]) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let mut argv = vec![
            "--server-port=0".to_owned(),
            "--bind-addr=127.0.0.1".to_owned(),
            format!("--redis-url={redis_url}"),
            format!(
                "--database-url=sqlite:{}",
                dir.path().join("items.db").display()
            ),
        ];
        argv.extend(flags.iter().map(|f| f.to_string()));
        let app = Application::build(config(&argv))
            .await
            .expect("the service starts");
        let port = app.port();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        Service {
            port,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            stop: Some(stop),
            server: Some(server),
            _dir: dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// An HTTP client for it (proxies of the environment ignored).
    pub fn http(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Shuts the service down gracefully and fails the test if it did not
    /// stop cleanly.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("the server task ends")
                .expect("the service stops cleanly");
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}
