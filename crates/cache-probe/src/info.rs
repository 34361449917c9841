//! `--poll-info`: the key count and memory of the Redis servers the probe
//! has seen, from `INFO` (unauthenticated; a server that wants a password
//! is skipped, once logged). One connection per server, kept between polls,
//! that sends nothing but `INFO` (no `CLIENT SETINFO`, which Redis 7.0
//! refuses); the probe leaves its own connections out of what it counts.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, IntoConnectionInfo};

use crate::metrics::Metrics;

pub async fn poll(metrics: Arc<Metrics>, every: Duration) {
    let mut refused = HashSet::new();
    let mut connections: HashMap<SocketAddr, Polling> = HashMap::new();
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        for server in metrics.servers() {
            match info(server, &mut connections, &metrics).await {
                Ok(found) => {
                    refused.remove(&server);
                    metrics.info(server, Some(found));
                }
                Err(err) => {
                    // A new connection at the next poll.
                    if let Some(gone) = connections.remove(&server) {
                        metrics.own_client(gone.local, false);
                    }
                    if refused.insert(server) {
                        tracing::warn!(%server, error = %err, "cannot poll INFO");
                    }
                    metrics.info(server, None);
                }
            }
        }
    }
}

/// The connection polling one server, and its client end.
struct Polling {
    conn: MultiplexedConnection,
    local: SocketAddr,
}

/// Connects to `server` with a socket of our own, whose client end is made
/// known before any byte is sent, so the probe never counts it.
async fn connect(server: SocketAddr, metrics: &Metrics) -> anyhow::Result<Polling> {
    let info = format!("redis://{server}").into_connection_info()?;
    let settings = info.redis_settings().clone().set_skip_set_lib_name();
    let stream = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(server)).await??;
    let local = stream.local_addr()?;
    metrics.own_client(local, true);
    let connected = tokio::time::timeout(
        TIMEOUT,
        MultiplexedConnection::new_with_config(&settings, stream, AsyncConnectionConfig::new()),
    )
    .await;
    match connected {
        Ok(Ok((conn, driver))) => {
            tokio::spawn(driver);
            Ok(Polling { conn, local })
        }
        failed => {
            metrics.own_client(local, false);
            Err(match failed {
                Ok(Err(err)) => err.into(),
                _ => anyhow::anyhow!("connecting timed out"),
            })
        }
    }
}

/// Bound on connecting and on one poll.
const TIMEOUT: Duration = Duration::from_secs(2);

async fn info(
    server: SocketAddr,
    connections: &mut HashMap<SocketAddr, Polling>,
    metrics: &Metrics,
) -> anyhow::Result<(u64, u64)> {
    let polling = match connections.get_mut(&server) {
        Some(polling) => polling,
        None => connections
            .entry(server)
            .or_insert(connect(server, metrics).await?),
    };
    let (keyspace, memory): (String, String) = tokio::time::timeout(
        TIMEOUT,
        redis::pipe()
            .cmd("INFO")
            .arg("keyspace")
            .cmd("INFO")
            .arg("memory")
            .query_async(&mut polling.conn),
    )
    .await??;
    Ok((keys(&keyspace), field(&memory, "used_memory")))
}

/// Keys in all databases, from `INFO keyspace` (`db0:keys=3,expires=…`).
fn keys(keyspace: &str) -> u64 {
    keyspace
        .lines()
        .filter(|line| line.starts_with("db"))
        .filter_map(|line| {
            line.split_once("keys=")?
                .1
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

fn field(section: &str, name: &str) -> u64 {
    section
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_sections() {
        assert_eq!(
            keys("# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\ndb2:keys=4,expires=0\r\n"),
            7
        );
        assert_eq!(
            field(
                "used_memory:1024\r\nused_memory_human:1K\r\n",
                "used_memory"
            ),
            1024
        );
    }
}
