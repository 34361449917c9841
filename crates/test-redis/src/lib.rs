//! Test support shared by the crates' integration tests: a `redis-server`
//! of the test's own, on a free port, without persistence, killed when
//! dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};

/// A free port for a test server, never handed out twice in this process.
///
/// Ports come from below the kernel's ephemeral range (32768 and up on Linux),
/// so no client socket of a parallel test can hold one: a server can still
/// bind a port that is some connection's local end (Redis sets
/// SO_REUSEADDR), and whatever tells connections apart by port (cache-probe
/// does) would then take that client for the server. Each port stays
/// reserved for the rest of the run, so a server down for a restart keeps it.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        // Test processes run one at a time, but spread them anyway.
        20_000 + (std::process::id() % 60) as u16 * 200,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(port < 32_000, "ran out of test ports");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
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
