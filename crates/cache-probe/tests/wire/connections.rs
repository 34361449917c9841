//! `obi_redis_connections_active` follows connections as they close: by the
//! client (a clean close, a reset, the process dying) or by the server, so
//! that it agrees with Redis' own `connected_clients`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::RedisExt as _;
use crate::helpers::{Probe, Redis, eventually_blocking};

/// `connected_clients` from `INFO clients` on `conn`.
fn connected_clients(conn: &mut redis::Connection) -> f64 {
    let info: String = redis::cmd("INFO").arg("clients").query(conn).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("connected_clients:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A raw connection that has sent one command and read its answer.
fn raw_client(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    let mut pong = [0u8; 7];
    stream.read_exact(&mut pong).unwrap();
    stream
}

#[test]
fn the_connection_gauge_agrees_with_redis_after_short_lived_clients() {
    let redis = Redis::start();
    let probe = Probe::start(&["--redis-port", &redis.port().to_string()]);
    let mut conn = redis.connection();
    let agree = |conn: &mut redis::Connection, what: &str| {
        eventually_blocking(what, Duration::from_secs(10), || {
            let redis_says = connected_clients(conn);
            let probe_says = probe.sum(
                "obi_redis_connections_active",
                &[("server_port", &redis.port().to_string())],
            );
            if probe_says == redis_says {
                Ok(())
            } else {
                Err((probe_says, redis_says))
            }
        })
    };
    // Clean closes: a client process that runs one command and exits.
    for n in 0..11 {
        redis.cli(&[], &format!("SET short{n} {n}\n"));
    }
    agree(&mut conn, "after 11 short redis-cli runs");

    // A reset: SO_LINGER 0, then close.
    let reset = raw_client(redis.port());
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a value of the right size.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::setsockopt(
            reset.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(reset);
    agree(&mut conn, "after a reset");

    // A client process killed with its connection open.
    let mut dying = Command::new("redis-cli")
        .args(["-p", &redis.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    dying.stdin.as_mut().unwrap().write_all(b"PING\n").unwrap();
    let mut pong = [0u8; 5];
    dying
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut pong)
        .unwrap();
    agree(&mut conn, "with a live redis-cli");
    dying.kill().unwrap();
    dying.wait().unwrap();
    agree(&mut conn, "after the redis-cli was killed");

    // The server closes: CLIENT KILL of an idle connection.
    let idle = raw_client(redis.port());
    agree(&mut conn, "with an idle client");
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("LADDR")
        .arg(format!("127.0.0.1:{}", redis.port()))
        .arg("SKIPME")
        .arg("yes")
        .query(&mut conn)
        .unwrap();
    assert!(killed >= 1);
    agree(&mut conn, "after the server closed it");
    drop(idle);
}
