//! A private `redis-server` per test, on a free port, without persistence,
//! killed when dropped (or when the thread that started it ends).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::{free_port, kill_with_parent};

pub struct Redis {
    port: u16,
    options: RedisOptions,
    child: Mutex<Option<Child>>,
    dir: tempfile::TempDir,
}

/// How to run the server and how tests reach it.
#[derive(Clone, Default)]
pub struct RedisOptions {
    /// Appended to the defaults; `{port}` is replaced by the server's port.
    pub extra_args: Vec<String>,
    /// Password of the `default` user, if the extra arguments set one.
    pub password: Option<String>,
    /// Serve TLS on the port (the extra arguments name the certificate).
    pub tls: bool,
}

/// One command's line of `INFO commandstats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommandStats {
    /// Calls that ran (successfully or not).
    pub calls: u64,
    /// Calls refused before they ran: unknown subcommand, wrong arity,
    /// no permission, and the like.
    pub rejected_calls: u64,
    /// Calls that ran and returned an error.
    pub failed_calls: u64,
}

impl Redis {
    /// Starts a server and returns once it accepts connections.
    pub fn start() -> Self {
        Self::start_with(RedisOptions::default())
    }

    pub fn start_with(options: RedisOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = free_port();
            if let Some(child) = spawn(port, dir.path(), &options.extra_args) {
                return Self {
                    port,
                    options,
                    child: Mutex::new(Some(child)),
                    dir,
                };
            }
        }
        panic!("could not start redis-server on a free port (apt-get install redis-server)");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL with which tests (not necessarily the service) reach the server.
    pub fn url(&self) -> String {
        let scheme = if self.options.tls { "rediss" } else { "redis" };
        let auth = match &self.options.password {
            Some(password) => format!(":{password}@"),
            None => String::new(),
        };
        format!("{scheme}://{auth}127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        let guard = self.child.lock().unwrap();
        guard.as_ref().expect("redis is running").id()
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).unwrap()
    }

    /// A blocking connection, for tests without a runtime.
    pub fn connection(&self) -> redis::Connection {
        self.client()
            .get_connection()
            .expect("test redis reachable")
    }

    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        self.client()
            .get_multiplexed_async_connection()
            .await
            .expect("test redis reachable")
    }

    /// One section of `INFO`, as Redis prints it.
    pub fn info(&self, section: &str) -> String {
        redis::cmd("INFO")
            .arg(section)
            .query(&mut self.connection())
            .unwrap()
    }

    /// `INFO commandstats`, by command name as Redis spells it (`get`,
    /// `client|setinfo`).
    pub fn command_stats(&self) -> BTreeMap<String, CommandStats> {
        self.info("commandstats")
            .lines()
            .filter_map(|line| {
                let (name, fields) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let field = |key: &str| -> u64 {
                    fields
                        .split(',')
                        .find_map(|f| f.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
                        .unwrap_or(0)
                };
                let stats = CommandStats {
                    calls: field("calls"),
                    rejected_calls: field("rejected_calls"),
                    failed_calls: field("failed_calls"),
                };
                Some((name.to_owned(), stats))
            })
            .collect()
    }

    /// Calls so far of each command (as [`Redis::command_stats`] names them).
    pub fn command_calls(&self) -> BTreeMap<String, u64> {
        self.command_stats()
            .into_iter()
            .map(|(name, stats)| (name, stats.calls))
            .collect()
    }

    /// Kills the server (SIGKILL: no chance to say goodbye to clients).
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts a fresh, empty one on the same port
    /// (its counters at zero).
    pub fn restart(&self) {
        self.kill();
        for _ in 0..50 {
            if let Some(child) = spawn(self.port, self.dir.path(), &self.options.extra_args) {
                *self.child.lock().unwrap() = Some(child);
                return;
            }
            // The port can linger briefly after a kill; this is a retry of a
            // failed bind, not a wait for an event.
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("could not restart redis-server on port {}", self.port);
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let guard = self.child.lock().unwrap();
        let child = guard.as_ref().expect("redis is running");
        // SAFETY: plain kill(2) on the pid of a child we own and have not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `redis-server` on `port` and waits for its "ready" log line;
/// `None` if it exited instead (the port was taken).
fn spawn(port: u16, dir: &Path, extra_args: &[String]) -> Option<Child> {
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--logfile", ""])
        .arg("--dir")
        .arg(dir)
        .args(["--maxmemory-policy", "allkeys-lru"])
        .args(
            extra_args
                .iter()
                .map(|a| a.replace("{port}", &port.to_string())),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    kill_with_parent(&mut command, libc::SIGKILL);
    let mut child = command
        .spawn()
        .expect("redis-server runs (apt-get install redis-server)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        if line.contains("Ready to accept connections") {
            // Keep draining its log so it never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return Some(child);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}
