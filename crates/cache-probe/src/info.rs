//! `--poll-info`: the key count and memory of the Redis servers the probe
//! has seen, from `INFO` (unauthenticated; a server that wants a password
//! is skipped, once logged).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;

pub async fn poll(metrics: Arc<Metrics>, every: Duration) {
    let mut refused = HashSet::new();
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        for server in metrics.servers() {
            match info(server).await {
                Ok(found) => {
                    refused.remove(&server);
                    metrics.info(server, Some(found));
                }
                Err(err) => {
                    if refused.insert(server) {
                        tracing::warn!(%server, error = %err, "cannot poll INFO");
                    }
                    metrics.info(server, None);
                }
            }
        }
    }
}

async fn info(server: std::net::SocketAddr) -> anyhow::Result<(u64, u64)> {
    let client = redis::Client::open(format!("redis://{server}"))?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await??;
    let (keyspace, memory): (String, String) = tokio::time::timeout(
        Duration::from_secs(2),
        redis::pipe()
            .cmd("INFO")
            .arg("keyspace")
            .cmd("INFO")
            .arg("memory")
            .query_async(&mut conn),
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
