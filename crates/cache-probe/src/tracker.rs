//! From kernel events to metrics and spans: one [`Connection`] per socket,
//! the side it is on (client or server), and which side counts.
//!
//! Each command is counted once, even when both its client and the Redis
//! server are followed: when the server is a followed process on this host,
//! its side of every connection counts (it sees every client, followed or
//! not) and the clients' sides are ignored; otherwise the client's side
//! counts. Which listeners are followed is known before their clients
//! connect (from `/proc` at start, from `listen` afterwards), so the choice
//! is made once per connection, not raced.
//!
//! A server side names its client process from the client's own events
//! when the client is followed too (events are handled a drained batch at a
//! time, so the client's send is known even when the server's read of it
//! was queued first), else from `/proc`.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::commands;
use crate::connection::{Connection, Observation};
use crate::discover::{self, Owners};
use crate::ebpf::{
    DIR_RECV, DIR_SEND, EVENT_CLIENT, EVENT_CLOSED, EVENT_DATA, EVENT_DISCOVERED, Event,
};
use crate::metrics::{CommandSeries, LookupSeries, Metrics, Peer};
use crate::spans::Spans;
use prometheus_text::Histogram;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

struct Socket {
    side: Side,
    /// The client end.
    client: SocketAddr,
    peer: Arc<Peer>,
    server: SocketAddr,
    /// False for a client side whose server side counts instead.
    counts: bool,
    connection: Connection,
    /// The syscall each direction's records are part of (requests, replies).
    progress: [Progress; 2],
    /// Its command series, by command and status.
    series: SeriesCache,
}

/// A connection's series, kept so that counting takes no lock: its commands
/// by name, one per status (looked up without allocating), and its
/// pipeline depths.
#[derive(Default)]
struct SeriesCache {
    /// Where each command's entry is in `entries`: one hash lookup finds
    /// it (a map of the entries themselves took a second to insert).
    commands: HashMap<String, usize, FastHash>,
    entries: Vec<CommandCache>,
    depth: Option<Arc<Histogram>>,
}

#[derive(Default)]
struct CommandCache {
    statuses: [Option<Arc<CommandSeries>>; 4],
    lookups: Option<Arc<LookupSeries>>,
}

/// The hasher of the probe's hot maps (sockets by cookie, series by
/// command name): FNV-1a, a few instructions per byte where the standard
/// SipHash, built to resist chosen keys, costs tens of nanoseconds. Keys are
/// socket cookies and command names, neither chosen by a peer in a way that
/// could degrade a map beyond its few hundred entries.
#[derive(Default, Clone, Copy)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }

    fn write_u64(&mut self, n: u64) {
        // A cookie: spread its bits (they count up from a boot-time value).
        self.0 = (self.0 ^ n)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
}

type FastHash = std::hash::BuildHasherDefault<Fnv>;

/// How much of one syscall's bytes its records have brought so far. A
/// syscall that moved more than one record holds comes as several records,
/// in order; a record the kernel could not hand over (ring buffer full) is
/// a hole of the bytes it held.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    /// Records of a syscall arrived, its last not yet.
    open: bool,
    /// Its bytes, and how many of them records have covered.
    length: usize,
    covered: usize,
}

/// One record's share of its syscall, as the parser takes it.
struct Part {
    /// Bytes of the previous syscall that never came (its last records
    /// lost); that syscall ends with them.
    previous_missed: usize,
    /// Bytes of this syscall before the record that never came.
    missed_before: usize,
    /// Bytes after the record, not captured; only on a syscall's last.
    missed_after: usize,
    last: bool,
}

impl Progress {
    fn part(&mut self, offset: usize, captured: usize, length: usize, last: bool) -> Part {
        let mut part = Part {
            previous_missed: 0,
            missed_before: 0,
            missed_after: 0,
            last,
        };
        if self.open && (offset == 0 || offset < self.covered || length != self.length) {
            // A new syscall: the previous one's last records were lost.
            part.previous_missed = self.length.saturating_sub(self.covered);
            self.open = false;
        }
        let covered = if self.open { self.covered } else { 0 };
        part.missed_before = offset.saturating_sub(covered);
        let end = offset + captured;
        if last {
            part.missed_after = length.saturating_sub(end);
            self.open = false;
        } else {
            *self = Progress {
                open: true,
                length,
                covered: end,
            };
        }
        part
    }
}

pub struct Tracker {
    ports: Vec<u16>,
    /// Replaces process names in `service_name`.
    service_name: Option<String>,
    sockets: HashMap<u64, Socket, FastHash>,
    /// Ports of this host's followed Redis servers.
    followed_listeners: HashSet<u16>,
    owners: Owners,
    /// Process names of followed clients, by (client, server) address.
    client_names: HashMap<(SocketAddr, SocketAddr), String>,
    metrics: Arc<Metrics>,
    spans: Option<Spans>,
    observations: Vec<Observation>,
}

impl Tracker {
    pub fn new(
        ports: Vec<u16>,
        service_name: Option<String>,
        followed_listeners: HashSet<u16>,
        metrics: Arc<Metrics>,
        spans: Option<Spans>,
    ) -> Self {
        Tracker {
            ports,
            service_name,
            sockets: HashMap::default(),
            followed_listeners,
            owners: Owners::default(),
            client_names: HashMap::new(),
            metrics,
            spans,
            observations: Vec::new(),
        }
    }

    /// One drained batch, in order; the events' payloads are taken.
    pub fn handle_batch(&mut self, events: &mut [Event]) {
        for event in events.iter() {
            if matches!(event.kind, EVENT_DATA | EVENT_CLIENT)
                && self.ports.contains(&event.remote.port())
            {
                self.client_names
                    .entry((event.local, event.remote))
                    .or_insert_with(|| event.comm.name());
            }
        }
        for event in events {
            self.handle(event);
        }
    }

    fn handle(&mut self, event: &mut Event) {
        match event.kind {
            EVENT_DISCOVERED if event.direction == DIR_RECV => {
                // A followed process started listening on a watched port.
                self.followed_listeners.insert(event.local.port());
            }
            EVENT_CLOSED => {
                // A client end never captured (named only) closes too.
                self.client_names.remove(&(event.local, event.remote));
                if let Some(socket) = self.sockets.remove(&event.cookie) {
                    if socket.counts {
                        self.metrics.connection(&socket.peer, -1);
                    }
                    if socket.side == Side::Client {
                        self.client_names.remove(&(socket.client, socket.server));
                    }
                }
            }
            EVENT_DATA => self.data(event),
            _ => {}
        }
    }

    fn data(&mut self, event: &mut Event) {
        if !self.sockets.contains_key(&event.cookie) {
            let Some(socket) = self.open(event) else {
                return;
            };
            if socket.counts {
                self.metrics.connection(&socket.peer, 1);
            }
            self.sockets.insert(event.cookie, socket);
        }
        let Some(socket) = self.sockets.get_mut(&event.cookie) else {
            return;
        };
        if !socket.counts {
            return;
        }
        let requests = match (socket.side, event.direction) {
            (Side::Client, DIR_SEND) | (Side::Server, DIR_RECV) => true,
            (Side::Client, DIR_RECV) | (Side::Server, DIR_SEND) => false,
            _ => return,
        };
        let part = socket.progress[usize::from(!requests)].part(
            event.offset as usize,
            event.data.len(),
            event.length as usize,
            event.last,
        );
        let (out, at, connection) = (
            &mut self.observations,
            event.timestamp_ns,
            &mut socket.connection,
        );
        if requests {
            if part.previous_missed > 0 {
                connection.request_part(Vec::new(), part.previous_missed, true, at, out);
            }
            if part.missed_before > 0 {
                connection.request_part(Vec::new(), part.missed_before, false, at, out);
            }
            let data = std::mem::take(&mut event.data);
            connection.request_part(data, part.missed_after, part.last, at, out);
        } else {
            for missed in [part.previous_missed, part.missed_before] {
                if missed > 0 {
                    connection.reply_part(Vec::new(), missed, at, out);
                }
            }
            let data = std::mem::take(&mut event.data);
            connection.reply_part(data, part.missed_after, at, out);
        }
        let (peer, server) = (&socket.peer, socket.server);
        for observation in self.observations.drain(..) {
            record(
                &self.metrics,
                self.spans.as_ref(),
                peer,
                server,
                &mut socket.series,
                observation,
            );
        }
    }

    fn open(&mut self, event: &Event) -> Option<Socket> {
        let (side, client, server) = if self.ports.contains(&event.remote.port()) {
            (Side::Client, event.local, event.remote)
        } else if self.ports.contains(&event.local.port()) {
            (Side::Server, event.remote, event.local)
        } else {
            return None;
        };
        let local = side == Side::Server && is_local(client.ip(), server.ip());
        let counts = match side {
            // The probe's own connections (`--poll-info`) are not traffic.
            Side::Server => !(local && self.metrics.is_own_client(client)),
            Side::Client => {
                !(self.followed_listeners.contains(&server.port())
                    && is_local(server.ip(), client.ip()))
            }
        };
        let service = match (&self.service_name, side) {
            (Some(name), _) => name.clone(),
            (None, Side::Client) => event.comm.name(),
            (None, Side::Server) if local => match self.client_names.get(&(client, server)) {
                Some(name) => name.clone(),
                None => self
                    .owners
                    .client_process(client, server)
                    .and_then(discover::comm)
                    .unwrap_or_else(|| "unknown".to_owned()),
            },
            (None, Side::Server) => client.ip().to_string(),
        };
        Some(Socket {
            side,
            client,
            peer: Arc::new(Peer { service, server }),
            server,
            counts,
            connection: Connection::default(),
            progress: Default::default(),
            series: SeriesCache::default(),
        })
    }

    /// At exit: spans still queued are exported.
    pub fn finish(&self) {
        if let Some(spans) = &self.spans {
            spans.shutdown();
        }
    }
}

/// Whether `server` is on this host, as seen from `client`.
fn is_local(server: IpAddr, client: IpAddr) -> bool {
    server.is_loopback() || server == client
}

fn command_cache<'a>(series: &'a mut SeriesCache, name: &str) -> &'a mut CommandCache {
    let index = match series.commands.get(name) {
        Some(&index) => index,
        None => {
            series.entries.push(CommandCache::default());
            let index = series.entries.len() - 1;
            series.commands.insert(name.to_owned(), index);
            index
        }
    };
    &mut series.entries[index]
}

fn record(
    metrics: &Metrics,
    spans: Option<&Spans>,
    peer: &Arc<Peer>,
    server: SocketAddr,
    series: &mut SeriesCache,
    observation: Observation,
) {
    match observation {
        Observation::Command(done) => {
            let took = Duration::from_nanos(done.answered_ns.saturating_sub(done.sent_ns));
            let name = &done.command.name;
            // Redis counts a command it does not know nowhere but in its
            // error statistics: not a command of `INFO commandstats`.
            let counted = done.rejected != Some(commands::Rejection::Unknown);
            let looked_up = done.lookups.total() > 0;
            if counted || looked_up {
                let cache = command_cache(series, name);
                if counted {
                    cache.statuses[done.status as usize]
                        .get_or_insert_with(|| {
                            metrics.command_series(peer, name, done.status.as_str())
                        })
                        .observe(took);
                }
                if looked_up {
                    cache
                        .lookups
                        .get_or_insert_with(|| metrics.lookup_series(peer, name))
                        .add(done.lookups);
                }
            }
            if let Some(rejection) = done.rejected {
                metrics.rejected(peer, name, rejection);
            }
            if let Some(spans) = spans {
                spans.command(peer, server, &done);
            }
        }
        Observation::Pipeline(depth) => {
            let histogram = series
                .depth
                .get_or_insert_with(|| metrics.pipeline_series(peer));
            crate::metrics::observe_depth(histogram, depth);
        }
        Observation::Delivered { channel } => metrics.pubsub(peer, &channel, "receive"),
        Observation::Published { channel } => metrics.pubsub(peer, &channel, "publish"),
        Observation::Resync => {
            metrics
                .probe
                .resyncs
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Observation::Skipped(bytes) => {
            metrics
                .probe
                .skipped
                .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_one_syscall_and_the_holes_of_lost_ones() {
        let mut p = Progress::default();
        // Three records of a 40,000-byte syscall, in order.
        let a = p.part(0, 16_384, 40_000, false);
        assert_eq!(
            (a.previous_missed, a.missed_before, a.missed_after),
            (0, 0, 0)
        );
        let b = p.part(16_384, 16_384, 40_000, false);
        assert_eq!((b.missed_before, b.last), (0, false));
        let c = p.part(32_768, 7_232, 40_000, true);
        assert_eq!((c.missed_before, c.missed_after, c.last), (0, 0, true));
        // A 3 MiB syscall: the first MiB captured, the rest a hole.
        let only = p.part(1_032_192, 16_384, 3 << 20, true);
        assert_eq!(
            (only.missed_before, only.missed_after),
            (1_032_192, (3 << 20) - (1 << 20))
        );
        // A middle record lost, then the syscall's last records lost too:
        // the next syscall closes it with what never came.
        p.part(0, 16_384, 50_000, false);
        let after_gap = p.part(32_768, 16_384, 50_000, false);
        assert_eq!(after_gap.missed_before, 16_384);
        let next = p.part(0, 100, 100, true);
        assert_eq!(
            (next.previous_missed, next.missed_before),
            (50_000 - 49_152, 0)
        );
    }
}
