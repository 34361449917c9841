//! The probe's metrics, in the Prometheus text format (`GET /metrics` on
//! `--metrics-addr`). Every series is labelled with the observed process
//! (`service_name`) and the Redis server (`server_address`, `server_port`).
//! Label values are
//! bounded: commands and pub/sub channels beyond a fixed number of distinct
//! names are reported as `other`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_text::{Exposition, Histogram, add_from_one_thread};

/// Command latency buckets, from 25 µs, fine below a millisecond where
/// Redis commands live.
pub const DURATION_BUCKETS: [f64; 21] = [
    0.000025, 0.00005, 0.000075, 0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.00075, 0.001,
    0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Commands per request burst.
pub const DEPTH_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
/// Distinct command names and channels kept as label values.
const MAX_COMMANDS: usize = 256;
const MAX_UNKNOWN_COMMANDS: usize = 32;
const MAX_CHANNELS: usize = 100;

/// Who and which server a series is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Peer {
    pub service: String,
    pub server: SocketAddr,
}

/// Keys are shared, not copied: a command is counted without allocating.
type Key<T> = (Arc<Peer>, T);

#[derive(Default)]
struct Series {
    commands: BTreeMap<Key<(Arc<str>, &'static str)>, Arc<CommandSeries>>,
    durations: BTreeMap<Key<Arc<str>>, Arc<Histogram>>,
    lookups: BTreeMap<Key<Arc<str>>, Arc<LookupSeries>>,
    rejected: BTreeMap<Key<(Arc<str>, &'static str)>, u64>,
    pubsub: BTreeMap<Key<(Arc<str>, &'static str)>, u64>,
    depth: BTreeMap<Arc<Peer>, Arc<Histogram>>,
    connections: BTreeMap<Arc<Peer>, i64>,
    info: BTreeMap<SocketAddr, (u64, u64)>,
    commands_seen: HashMap<String, Arc<str>>,
    /// Names Redis does not know, kept apart: garbage sent as commands
    /// must not use up the names of real ones.
    unknown_seen: HashMap<String, Arc<str>>,
    channels_seen: HashMap<String, Arc<str>>,
}

/// One command's count with one status, and its latency histogram (shared
/// by its statuses).
pub struct CommandSeries {
    count: AtomicU64,
    duration: Arc<Histogram>,
}

impl CommandSeries {
    /// Counts a command. Series are written by the tracker's thread alone
    /// (the exposition only reads them): no locked instructions.
    pub fn observe(&self, took: Duration) {
        add_from_one_thread(&self.count, 1);
        self.duration.observe_from_one_thread(took);
    }
}

/// One command's key lookups: hits, misses, unknown.
#[derive(Default)]
pub struct LookupSeries([AtomicU64; 3]);

impl LookupSeries {
    /// Counts a command's lookups; written by the tracker's thread alone,
    /// as [`CommandSeries`].
    pub fn add(&self, lookups: crate::commands::Lookups) {
        for (counter, n) in self
            .0
            .iter()
            .zip([lookups.hits, lookups.misses, lookups.unknown])
        {
            if n > 0 {
                add_from_one_thread(counter, n);
            }
        }
    }
}

/// Counters of the probe itself.
#[derive(Default)]
pub struct SelfCounters {
    pub events: AtomicU64,
    pub bytes: AtomicU64,
    pub lost: AtomicU64,
    pub truncated: AtomicU64,
    pub resyncs: AtomicU64,
    pub skipped: AtomicU64,
    pub processes: AtomicU64,
}

#[derive(Default)]
pub struct Metrics {
    series: Mutex<Series>,
    pub probe: SelfCounters,
    /// The client ends of the probe's own connections (`--poll-info`):
    /// not traffic, never counted.
    own_clients: Mutex<std::collections::HashSet<SocketAddr>>,
}

/// `value` as a label value, `shown` as `shown(value)`, shared; `other` once
/// `limit` distinct values have been seen.
fn bounded(
    seen: &mut HashMap<String, Arc<str>>,
    limit: usize,
    value: &str,
    shown: fn(&str) -> String,
) -> Arc<str> {
    if let Some(kept) = seen.get(value) {
        return kept.clone();
    }
    let kept: Arc<str> = if seen.len() < limit {
        shown(value).into()
    } else {
        "other".into()
    };
    seen.insert(value.to_owned(), kept.clone());
    kept
}

/// A command as Redis users and its documentation spell it: `GET`,
/// `CLIENT|SETINFO` (as `INFO commandstats` names it, in capitals).
pub fn command_label(command: &str) -> String {
    command.to_ascii_uppercase()
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Series> {
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `client` is (`open`) or is no longer the client end of one of the
    /// probe's own connections.
    pub fn own_client(&self, client: SocketAddr, open: bool) {
        let mut own = self.own_clients.lock().unwrap_or_else(|e| e.into_inner());
        if open {
            own.insert(client);
        } else {
            own.remove(&client);
        }
    }

    pub fn is_own_client(&self, client: SocketAddr) -> bool {
        let own = self.own_clients.lock().unwrap_or_else(|e| e.into_inner());
        own.contains(&client)
    }

    pub fn command(&self, peer: &Arc<Peer>, command: &str, status: &'static str, took: Duration) {
        self.command_series(peer, command, status).observe(took);
    }

    /// The series of `command` answered with `status` for `peer`: kept by
    /// the caller, so that counting a command is two atomic additions, not
    /// a lock and two map lookups.
    pub fn command_series(
        &self,
        peer: &Arc<Peer>,
        command: &str,
        status: &'static str,
    ) -> Arc<CommandSeries> {
        let mut s = self.lock();
        let command = bounded(&mut s.commands_seen, MAX_COMMANDS, command, command_label);
        let duration = s
            .durations
            .entry((peer.clone(), command.clone()))
            .or_insert_with(|| Arc::new(Histogram::new(&DURATION_BUCKETS)))
            .clone();
        s.commands
            .entry((peer.clone(), (command, status)))
            .or_insert_with(|| {
                Arc::new(CommandSeries {
                    count: AtomicU64::new(0),
                    duration,
                })
            })
            .clone()
    }

    pub fn lookups(&self, peer: &Arc<Peer>, command: &str, lookups: crate::commands::Lookups) {
        self.lookup_series(peer, command).add(lookups);
    }

    /// `peer`'s key lookups by `command`, for the caller to keep.
    pub fn lookup_series(&self, peer: &Arc<Peer>, command: &str) -> Arc<LookupSeries> {
        let mut s = self.lock();
        let command = bounded(&mut s.commands_seen, MAX_COMMANDS, command, command_label);
        s.lookups
            .entry((peer.clone(), command))
            .or_default()
            .clone()
    }

    /// A command Redis refused without running it.
    pub fn rejected(&self, peer: &Arc<Peer>, command: &str, why: crate::commands::Rejection) {
        let mut s = self.lock();
        let command = match why {
            crate::commands::Rejection::Unknown => bounded(
                &mut s.unknown_seen,
                MAX_UNKNOWN_COMMANDS,
                command,
                command_label,
            ),
            crate::commands::Rejection::Refused(_) => {
                bounded(&mut s.commands_seen, MAX_COMMANDS, command, command_label)
            }
        };
        *s.rejected
            .entry((peer.clone(), (command, why.reason())))
            .or_default() += 1;
    }

    pub fn pubsub(&self, peer: &Arc<Peer>, channel: &[u8], direction: &'static str) {
        let mut s = self.lock();
        let channel = bounded(
            &mut s.channels_seen,
            MAX_CHANNELS,
            &String::from_utf8_lossy(channel),
            str::to_owned,
        );
        *s.pubsub
            .entry((peer.clone(), (channel, direction)))
            .or_default() += 1;
    }

    /// `peer`'s pipeline depth histogram, for the caller to keep.
    pub fn pipeline_series(&self, peer: &Arc<Peer>) -> Arc<Histogram> {
        self.lock()
            .depth
            .entry(peer.clone())
            .or_insert_with(|| Arc::new(Histogram::new(&DEPTH_BUCKETS)))
            .clone()
    }

    pub fn connection(&self, peer: &Arc<Peer>, change: i64) {
        *self.lock().connections.entry(peer.clone()).or_default() += change;
    }

    /// What `--poll-info` found; `None` when the server did not answer (its
    /// last numbers are not shown as current).
    pub fn info(&self, server: SocketAddr, found: Option<(u64, u64)>) {
        let mut s = self.lock();
        match found {
            Some(found) => s.info.insert(server, found),
            None => s.info.remove(&server),
        };
    }

    /// Redis servers seen so far.
    pub fn servers(&self) -> Vec<SocketAddr> {
        let s = self.lock();
        let mut servers: Vec<SocketAddr> = s.connections.keys().map(|p| p.server).collect();
        servers.sort();
        servers.dedup();
        servers
    }

    pub fn render(&self) -> String {
        let s = self.lock();
        let mut out = Exposition::default();
        let labels = |peer: &Peer| {
            vec![
                ("service_name", peer.service.clone()),
                ("server_address", peer.server.ip().to_string()),
                ("server_port", peer.server.port().to_string()),
            ]
        };
        let server_labels = |server: &SocketAddr| {
            [
                ("server_address", server.ip().to_string()),
                ("server_port", server.port().to_string()),
            ]
        };
        out.family(
            "obi_redis_commands_total",
            "counter",
            "Redis commands seen on the wire, by command and status (hit or miss for single-key reads, ok, error).",
        );
        for ((peer, (command, status)), series) in &s.commands {
            let mut l = labels(peer);
            l.push(("command", command.to_string()));
            l.push(("status", (*status).to_owned()));
            let n = series.count.load(Ordering::Relaxed);
            out.sample("obi_redis_commands_total", &refs(&l), n as f64);
        }
        out.family(
            "obi_redis_command_duration_seconds",
            "histogram",
            "Time from a command leaving the client to its reply arriving (server side: from request read to reply written).",
        );
        for ((peer, command), histogram) in &s.durations {
            let mut l = labels(peer);
            l.push(("command", command.to_string()));
            out.histogram("obi_redis_command_duration_seconds", &refs(&l), histogram);
        }
        out.family(
            "obi_redis_rejected_commands_total",
            "counter",
            "Commands Redis refused without running them, by reason (unknown: a command or subcommand it does not know, not in obi_redis_commands_total; arity, noperm, oom, readonly…: in obi_redis_commands_total with status error, in INFO commandstats' rejected_calls).",
        );
        for ((peer, (command, reason)), n) in &s.rejected {
            let mut l = labels(peer);
            l.push(("command", command.to_string()));
            l.push(("reason", (*reason).to_owned()));
            out.sample("obi_redis_rejected_commands_total", &refs(&l), *n as f64);
        }
        out.family(
            "obi_redis_key_lookups_total",
            "counter",
            "Key lookups Redis counts in keyspace_hits and keyspace_misses, by result (hit, miss, or unknown when the reply does not tell: HGET nil, an empty SINTER).",
        );
        for ((peer, command), series) in &s.lookups {
            for (result, counter) in ["hit", "miss", "unknown"].into_iter().zip(&series.0) {
                let n = counter.load(Ordering::Relaxed);
                if n > 0 {
                    let mut l = labels(peer);
                    l.push(("command", command.to_string()));
                    l.push(("result", result.to_owned()));
                    out.sample("obi_redis_key_lookups_total", &refs(&l), n as f64);
                }
            }
        }
        out.family(
            "obi_redis_pubsub_messages_total",
            "counter",
            "Pub/sub messages published (PUBLISH answered) and received (delivered to a subscriber).",
        );
        for ((peer, (channel, direction)), n) in &s.pubsub {
            let mut l = labels(peer);
            l.push(("channel", channel.to_string()));
            l.push(("direction", (*direction).to_owned()));
            out.sample("obi_redis_pubsub_messages_total", &refs(&l), *n as f64);
        }
        out.family(
            "obi_redis_pipeline_depth",
            "histogram",
            "Commands sent in one request burst (one syscall).",
        );
        for (peer, histogram) in &s.depth {
            out.histogram("obi_redis_pipeline_depth", &refs(&labels(peer)), histogram);
        }
        out.family(
            "obi_redis_connections_active",
            "gauge",
            "Redis connections open, as seen by the probe.",
        );
        for (peer, n) in &s.connections {
            out.sample(
                "obi_redis_connections_active",
                &refs(&labels(peer)),
                *n as f64,
            );
        }
        if !s.info.is_empty() {
            out.family(
                "obi_redis_keys_total",
                "gauge",
                "Keys in the Redis server, all databases (INFO keyspace, --poll-info).",
            );
            for (server, (keys, _)) in &s.info {
                out.sample(
                    "obi_redis_keys_total",
                    &refs(&server_labels(server)),
                    *keys as f64,
                );
            }
            out.family(
                "obi_redis_memory_usage_bytes",
                "gauge",
                "Memory used by the Redis server (INFO used_memory, --poll-info).",
            );
            for (server, (_, memory)) in &s.info {
                out.sample(
                    "obi_redis_memory_usage_bytes",
                    &refs(&server_labels(server)),
                    *memory as f64,
                );
            }
        }
        let p = &self.probe;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        for (name, help, value) in [
            (
                "obi_probe_events_total",
                "Syscall events captured by the kernel programs.",
                load(&p.events),
            ),
            (
                "obi_probe_captured_bytes_total",
                "Payload bytes copied to user space.",
                load(&p.bytes),
            ),
            (
                "obi_probe_events_lost_total",
                "Events dropped because the ring buffer was full.",
                load(&p.lost),
            ),
            (
                "obi_probe_events_truncated_total",
                "Syscalls that moved more bytes than the capture limit (1 MiB per syscall); the rest is skipped, not parsed.",
                load(&p.truncated),
            ),
            (
                "obi_probe_skipped_bytes_total",
                "Bytes not captured that the parser skipped inside bulk strings, whose length it knew, keeping its framing.",
                load(&p.skipped),
            ),
            (
                "obi_probe_parse_resyncs_total",
                "Times a RESP stream lost its framing and found it again.",
                load(&p.resyncs),
            ),
        ] {
            out.counter(name, help, value);
        }
        out.gauge(
            "obi_probe_processes_selected",
            "Processes the kernel programs follow.",
            load(&p.processes) as f64,
        );
        out.finish()
    }
}

/// Records one burst of `depth` commands (the histogram counts seconds:
/// a depth is given as that many).
/// Counts a burst of `depth` commands; written by the tracker's thread
/// alone, as [`CommandSeries`].
pub fn observe_depth(histogram: &Histogram, depth: usize) {
    histogram.observe_from_one_thread(Duration::from_secs(depth as u64));
}

fn refs<'a>(labels: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    labels.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_and_bounded_labels() {
        let metrics = Metrics::default();
        let peer = Arc::new(Peer {
            service: "api".into(),
            server: "127.0.0.1:6379".parse().unwrap(),
        });
        metrics.command(&peer, "get", "hit", Duration::from_micros(40));
        metrics.command(&peer, "get", "hit", Duration::from_micros(40));
        metrics.command(&peer, "client|setinfo", "ok", Duration::from_micros(40));
        metrics.lookups(
            &peer,
            "mget",
            crate::commands::Lookups {
                hits: 2,
                misses: 1,
                unknown: 0,
            },
        );
        metrics.rejected(&peer, "frob", crate::commands::Rejection::Unknown);
        for n in 0..200 {
            metrics.pubsub(&peer, format!("ch{n}").as_bytes(), "publish");
        }
        let text = metrics.render();
        assert!(text.contains(r#"obi_redis_commands_total{service_name="api",server_address="127.0.0.1",server_port="6379",command="GET",status="hit"} 2"#));
        assert!(text.contains(r#"obi_redis_command_duration_seconds_bucket{service_name="api",server_address="127.0.0.1",server_port="6379",command="GET",le="0.00005"} 2"#));
        assert!(text.contains(r#"command="MGET",result="miss"} 1"#));
        assert!(text.contains(r#"command="CLIENT|SETINFO",status="ok"} 1"#));
        assert!(text.contains(r#"command="FROB",reason="unknown"} 1"#));
        assert!(
            text.contains(r#"channel="other",direction="publish"} 100"#),
            "channels capped"
        );
    }
}
