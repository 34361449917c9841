//! What the wire tests run: a private `redis-server`, the `cache-probe`
//! binary watching its port, Redis' own counters, and the probe's metrics.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the tests send to read Redis' counters (each reading opens a
/// connection: the client library's handshake, then `INFO`), left out of
/// both sides of every comparison.
pub const OWN_COMMANDS: [&str; 2] = ["INFO", "CLIENT|SETINFO"];

pub use test_support::{Redis, eventually_blocking, free_port};

/// What the wire tests ask of their Redis, beyond what every test does.
pub trait RedisExt {
    fn commandstats(&self) -> BTreeMap<String, u64>;
    fn keyspace(&self) -> (u64, u64);
    fn benchmark(&self, args: &[&str]) -> String;
    fn cli(&self, extra: &[&str], script: &str) -> String;
}

impl RedisExt for Redis {
    /// `INFO commandstats`: calls (and calls refused) per command, as Redis
    /// counts them, without the tests' own polling ([`OWN_COMMANDS`]);
    /// named in capitals, as the probe labels them.
    fn commandstats(&self) -> BTreeMap<String, u64> {
        self.command_stats()
            .into_iter()
            .map(|(name, stats)| {
                (
                    name.to_ascii_uppercase(),
                    stats.calls + stats.rejected_calls,
                )
            })
            .filter(|(name, _)| !OWN_COMMANDS.contains(&name.as_str()))
            .collect()
    }

    /// `keyspace_hits` and `keyspace_misses`.
    fn keyspace(&self) -> (u64, u64) {
        let info = self.info("stats");
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
                .unwrap()
        };
        (field("keyspace_hits"), field("keyspace_misses"))
    }

    /// `redis-benchmark` against this server, quiet; panics if it fails.
    fn benchmark(&self, args: &[&str]) -> String {
        let port = self.port().to_string();
        let output = Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &port])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("redis-benchmark runs");
        assert!(output.status.success(), "redis-benchmark {args:?} failed");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A scripted `redis-cli` session: one command per line on its input.
    fn cli(&self, extra: &[&str], script: &str) -> String {
        let port = self.port().to_string();
        let mut child = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("redis-cli runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "redis-cli failed on {script}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// One sample of the probe's exposition.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// The `cache-probe` binary, serving its metrics on a free port.
pub struct Probe {
    pub metrics_port: u16,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Probe {
    /// Starts the probe with `args` and waits until it serves `/metrics`
    /// (it does once its programs are attached).
    pub fn start(args: &[&str]) -> Probe {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Probe {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("probe.log");
        let metrics_port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_cache-probe"))
            .args(args)
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("probe.err")).unwrap())
            .spawn()
            .unwrap();
        let mut probe = Probe {
            metrics_port,
            child,
            log,
            _dir: dir,
        };
        let started = Instant::now();
        while probe.fetch("/healthz").is_none() {
            if let Ok(Some(status)) = probe.child.try_wait() {
                panic!(
                    "cache-probe exited ({status}) while starting: {}",
                    probe.stderr()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "cache-probe did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        probe
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.log.with_file_name("probe.err")).unwrap_or_default()
    }

    /// A plain HTTP/1.0 GET; `None` while nothing listens.
    fn fetch(&self, path: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: probe\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (_, body) = response.split_once("\r\n\r\n")?;
        Some(body.to_owned())
    }

    pub fn exposition(&self) -> String {
        self.fetch("/metrics").expect("the probe serves /metrics")
    }

    pub fn samples(&self) -> Vec<Sample> {
        parse(&self.exposition())
    }

    /// Commands seen against the server on `port`, whatever their status
    /// and client.
    pub fn commands(&self, port: u16) -> BTreeMap<String, u64> {
        let mut commands = BTreeMap::new();
        for s in self.samples() {
            if s.name == "obi_redis_commands_total" && s.label("server_port") == port.to_string() {
                *commands.entry(s.label("command").to_owned()).or_default() += s.value as u64;
            }
        }
        commands.retain(|name, _| !OWN_COMMANDS.contains(&name.as_str()));
        commands
    }

    /// Key lookups (hits, misses) against the server on `port`; panics if
    /// some had an unknown result.
    pub fn key_lookups(&self, port: u16) -> (u64, u64) {
        let (hits, misses, unknown) = self.all_key_lookups(port);
        assert_eq!(unknown, 0, "lookups of unknown result");
        (hits, misses)
    }

    /// Key lookups (hits, misses, unknown) against the server on `port`.
    pub fn all_key_lookups(&self, port: u16) -> (u64, u64, u64) {
        let (mut hits, mut misses, mut unknown) = (0, 0, 0);
        for s in self.samples() {
            if s.name == "obi_redis_key_lookups_total" && s.label("server_port") == port.to_string()
            {
                match s.label("result") {
                    "hit" => hits += s.value as u64,
                    "miss" => misses += s.value as u64,
                    _ => unknown += s.value as u64,
                }
            }
        }
        (hits, misses, unknown)
    }

    /// The sum of the samples named `name` whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples()
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == *v))
            .map(|s| s.value)
            .sum()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        // SIGTERM: it detaches cleanly.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// The Prometheus text format, enough of it for our own exposition.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let mut parsed = BTreeMap::new();
            let mut rest = labels;
            while let Some((key, after)) = rest.split_once("=\"") {
                let end = after.find('"')?;
                parsed.insert(
                    key.trim_start_matches(',').to_owned(),
                    after[..end].to_owned(),
                );
                rest = &after[end + 1..];
            }
            Some(Sample {
                name: name.to_owned(),
                labels: parsed,
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// Waits until the probe has counted exactly what Redis did, command by
/// command; panics with both tables otherwise.
pub fn assert_commands_match(
    probe: &Probe,
    redis: &Redis,
    expected: impl Fn() -> BTreeMap<String, u64>,
) {
    eventually_blocking(
        "the probe's counts to equal INFO commandstats",
        Duration::from_secs(20),
        || {
            let (seen, wanted) = (probe.commands(redis.port()), expected());
            if seen == wanted {
                Ok(())
            } else {
                Err((("probe", seen), ("redis", wanted)))
            }
        },
    );
}

/// This process's name, as the probe reports it.
pub fn own_name() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .unwrap()
        .trim_end()
        .to_owned()
}
