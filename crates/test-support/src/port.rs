//! Ports for test servers.

use std::net::TcpListener;
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
