//! A private `redis-server` per test, on a free port, killed on drop.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use super::{free_port, kill_with_parent};

pub struct TestRedis {
    port: u16,
    options: RedisOptions,
    child: Mutex<Option<Child>>,
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

impl TestRedis {
    pub fn start() -> Self {
        Self::start_with(RedisOptions::default())
    }

    pub fn start_with(options: RedisOptions) -> Self {
        for _ in 0..5 {
            let port = free_port();
            if let Some(child) = spawn(port, &options.extra_args) {
                return Self {
                    port,
                    options,
                    child: Mutex::new(Some(child)),
                };
            }
        }
        panic!("could not start redis-server on a free port (is redis-server installed?)");
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

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).unwrap()
    }

    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        self.client()
            .get_multiplexed_async_connection()
            .await
            .expect("test redis reachable")
    }

    /// Kills the server (SIGKILL: no chance to say goodbye to clients).
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a fresh, empty server on the same port.
    pub fn restart(&self) {
        self.kill();
        for _ in 0..50 {
            if let Some(child) = spawn(self.port, &self.options.extra_args) {
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

    /// `INFO commandstats` as command name → number of calls.
    pub async fn command_calls(&self) -> HashMap<String, u64> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut self.conn().await)
            .await
            .unwrap();
        info.lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("cmdstat_")?;
                let (name, fields) = rest.split_once(':')?;
                let calls = fields.split(',').find_map(|f| f.strip_prefix("calls="))?;
                Some((name.to_owned(), calls.parse().ok()?))
            })
            .collect()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `redis-server` on `port` and waits for its "ready" log line.
/// `None` if it exited instead (port taken).
fn spawn(port: u16, extra_args: &[String]) -> Option<Child> {
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--logfile", ""])
        .args(["--maxmemory-policy", "allkeys-lru"])
        .args(
            extra_args
                .iter()
                .map(|a| a.replace("{port}", &port.to_string())),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    kill_with_parent(&mut command, libc::SIGKILL);
    let mut child = command.spawn().expect("redis-server is installed");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        if line.contains("Ready to accept connections") {
            // Keep draining the log so the server never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return Some(child);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}
