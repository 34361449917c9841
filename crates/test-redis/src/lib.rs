//! Test support shared by the crates' integration tests: a `redis-server`
//! of the test's own, on a free port, without persistence, killed when
//! dropped.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

/// A port nothing listens on, chosen below the kernel's ephemeral range.
/// A port from that range may be the local end of another test's client
/// connection at the same moment, and a server can still bind it (Redis sets
/// SO_REUSEADDR); whatever then tells connections apart by port (cache-probe
/// does) would take that client for this server.
pub fn free_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (from, to) = if low > 11_000 {
        (10_000, low)
    } else {
        (61_000, u16::MAX)
    };
    let random = RandomState::new();
    (0u32..)
        .map(|attempt| from + (random.hash_one(attempt) % u64::from(to - from)) as u16)
        .find(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free port")
}

pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts a server and returns once it accepts connections.
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        loop {
            let port = free_port();
            if let Some(child) = spawn(port, dir.path()) {
                return Redis {
                    port,
                    child: Some(child),
                    dir,
                };
            }
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// `SIGKILL`, then a new server on the same port (empty, counters at 0).
    pub fn crash_and_restart(&mut self) {
        self.kill();
        let child = spawn(self.port, self.dir.path()).expect("the port is free again");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `redis-server` and waits for it to say it is ready; `None` if it
/// exited instead (the port was taken).
fn spawn(port: u16, dir: &std::path::Path) -> Option<Child> {
    let mut child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            dir.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server runs (apt-get install redis-server)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        if line.contains("Ready to accept connections") {
            // Keep draining its output so it never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return Some(child);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}
