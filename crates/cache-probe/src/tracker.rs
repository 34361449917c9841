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

use crate::commands::{self, Name, Reading};
use crate::connection::{Completed, Connection, Observer};
use crate::discover::{self, Owners};
use crate::ebpf::{
    Batch, DIR_RECV, DIR_SEND, EVENT_CLIENT, EVENT_CLOSED, EVENT_DATA, EVENT_DISCOVERED, Event,
};
use crate::fnv::FastHash;
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
    /// Each command's entry, by its name's id: a connection sends few
    /// distinct commands, found by a short scan (a hash lookup cost more);
    /// past [`SCANNED`], `more` finds the rest.
    commands: Vec<(usize, CommandCache)>,
    more: HashMap<usize, CommandCache, FastHash>,
    depth: Option<Arc<Histogram>>,
}

/// Commands of one connection found by a scan.
const SCANNED: usize = 16;

#[derive(Default)]
struct CommandCache {
    statuses: [Option<Arc<CommandSeries>>; 4],
    lookups: Option<Arc<LookupSeries>>,
}

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
        }
    }

    /// One drained batch, in order.
    pub fn handle_batch(&mut self, batch: &Batch) {
        for event in batch.events() {
            if matches!(event.kind, EVENT_DATA | EVENT_CLIENT)
                && self.ports.contains(&event.ends.remote_port)
            {
                self.client_names
                    .entry((event.ends.local(), event.ends.remote()))
                    .or_insert_with(|| event.comm.name());
            }
        }
        for event in batch.events() {
            self.handle(event, batch.data(event));
        }
    }

    fn handle(&mut self, event: &Event, data: &[u8]) {
        match event.kind {
            EVENT_DISCOVERED if event.direction == DIR_RECV => {
                // A followed process started listening on a watched port.
                self.followed_listeners.insert(event.ends.local_port);
            }
            EVENT_CLOSED => {
                // A client end never captured (named only) closes too.
                self.client_names
                    .remove(&(event.ends.local(), event.ends.remote()));
                if let Some(socket) = self.sockets.remove(&event.cookie) {
                    if socket.counts {
                        self.metrics.connection(&socket.peer, -1);
                    }
                    if socket.side == Side::Client {
                        self.client_names.remove(&(socket.client, socket.server));
                    }
                }
            }
            EVENT_DATA => self.data(event, data),
            _ => {}
        }
    }

    fn data(&mut self, event: &Event, data: &[u8]) {
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
            data.len(),
            event.length as usize,
            event.last,
        );
        let at = event.timestamp_ns;
        let mut out = Recorder {
            metrics: &self.metrics,
            spans: self.spans.as_ref(),
            peer: &socket.peer,
            server: socket.server,
            series: &mut socket.series,
        };
        let connection = &mut socket.connection;
        if requests {
            if part.previous_missed > 0 {
                connection.request_part(&[], part.previous_missed, true, at, &mut out);
            }
            if part.missed_before > 0 {
                connection.request_part(&[], part.missed_before, false, at, &mut out);
            }
            connection.request_part(data, part.missed_after, part.last, at, &mut out);
        } else {
            for missed in [part.previous_missed, part.missed_before] {
                if missed > 0 {
                    connection.reply_part(&[], missed, at, &mut out);
                }
            }
            connection.reply_part(data, part.missed_after, at, &mut out);
        }
    }

    fn open(&mut self, event: &Event) -> Option<Socket> {
        let (local, remote) = (event.ends.local(), event.ends.remote());
        let (side, client, server) = if self.ports.contains(&remote.port()) {
            (Side::Client, local, remote)
        } else if self.ports.contains(&local.port()) {
            (Side::Server, remote, local)
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
            // Keys are shown in spans only.
            connection: Connection::new(Reading {
                keys: self.spans.is_some(),
            }),
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

fn command_cache(series: &mut SeriesCache, name: Name) -> &mut CommandCache {
    let id = name.id();
    if let Some(at) = series.commands.iter().position(|(known, _)| *known == id) {
        return &mut series.commands[at].1;
    }
    if series.commands.len() < SCANNED {
        series.commands.push((id, CommandCache::default()));
        return &mut series.commands.last_mut().expect("just pushed").1;
    }
    series.more.entry(id).or_default()
}

/// Where a connection's observations go: its series, and spans.
struct Recorder<'a> {
    metrics: &'a Metrics,
    spans: Option<&'a Spans>,
    peer: &'a Arc<Peer>,
    server: SocketAddr,
    series: &'a mut SeriesCache,
}

impl Observer for Recorder<'_> {
    fn command(&mut self, done: &Completed) {
        let (metrics, peer) = (self.metrics, self.peer);
        let took = Duration::from_nanos(done.answered_ns.saturating_sub(done.sent_ns));
        let name = done.command.name;
        // Redis counts a command it does not know nowhere but in its
        // error statistics: not a command of `INFO commandstats`.
        let counted = done.rejected != Some(commands::Rejection::Unknown);
        let looked_up = done.lookups.total() > 0;
        if counted || looked_up {
            let cache = command_cache(self.series, name);
            if counted {
                cache.statuses[done.status as usize]
                    .get_or_insert_with(|| {
                        metrics.command_series(peer, &name, done.status.as_str())
                    })
                    .observe(took);
            }
            if looked_up {
                cache
                    .lookups
                    .get_or_insert_with(|| metrics.lookup_series(peer, &name))
                    .add(done.lookups);
            }
        }
        if let Some(rejection) = done.rejected {
            metrics.rejected(peer, &name, rejection);
        }
        if let Some(spans) = self.spans {
            spans.command(peer, self.server, done);
        }
    }

    fn pipeline(&mut self, depth: usize) {
        let histogram = self
            .series
            .depth
            .get_or_insert_with(|| self.metrics.pipeline_series(self.peer));
        crate::metrics::observe_depth(histogram, depth);
    }

    fn delivered(&mut self, channel: &[u8]) {
        self.metrics.pubsub(self.peer, channel, "receive");
    }

    fn published(&mut self, channel: &[u8]) {
        self.metrics.pubsub(self.peer, channel, "publish");
    }

    fn resync(&mut self) {
        self.metrics
            .probe
            .resyncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn skipped(&mut self, bytes: u64) {
        self.metrics
            .probe
            .skipped
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
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
