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
use crate::metrics::{Metrics, Peer};
use crate::spans::Spans;

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
}

pub struct Tracker {
    ports: Vec<u16>,
    /// Replaces process names in `service_name`.
    service_name: Option<String>,
    sockets: HashMap<u64, Socket>,
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
            sockets: HashMap::new(),
            followed_listeners,
            owners: Owners::default(),
            client_names: HashMap::new(),
            metrics,
            spans,
            observations: Vec::new(),
        }
    }

    /// One drained batch, in order.
    pub fn handle_batch(&mut self, events: Vec<Event>) {
        for event in &events {
            if matches!(event.kind, EVENT_DATA | EVENT_CLIENT)
                && self.ports.contains(&event.remote.port())
            {
                self.client_names
                    .entry((event.local, event.remote))
                    .or_insert_with(|| event.comm.clone());
            }
        }
        for event in events {
            self.handle(event);
        }
    }

    fn handle(&mut self, event: Event) {
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

    fn data(&mut self, event: Event) {
        if !self.sockets.contains_key(&event.cookie) {
            let Some(socket) = self.open(&event) else {
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
        let out = &mut self.observations;
        if requests {
            socket
                .connection
                .requests(&event.data, event.length as usize, event.timestamp_ns, out);
        } else {
            socket
                .connection
                .replies(&event.data, event.length as usize, event.timestamp_ns, out);
        }
        let (peer, server) = (socket.peer.clone(), socket.server);
        for observation in self.observations.drain(..) {
            record(
                &self.metrics,
                self.spans.as_ref(),
                &peer,
                server,
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
            (None, Side::Client) => event.comm.clone(),
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

fn record(
    metrics: &Metrics,
    spans: Option<&Spans>,
    peer: &Arc<Peer>,
    server: SocketAddr,
    observation: Observation,
) {
    match observation {
        Observation::Command(done) => {
            let took = Duration::from_nanos(done.answered_ns.saturating_sub(done.sent_ns));
            metrics.command(peer, &done.command.name, done.status.as_str(), took);
            if done.hits + done.misses > 0 && commands::counts_key_lookups(&done.command.name) {
                metrics.lookups(peer, &done.command.name, done.hits, done.misses);
            }
            if let Some(spans) = spans {
                spans.command(peer, server, &done);
            }
        }
        Observation::Pipeline(depth) => metrics.pipeline(peer, depth),
        Observation::Delivered { channel } => metrics.pubsub(peer, &channel, "receive"),
        Observation::Published { channel } => metrics.pubsub(peer, &channel, "publish"),
        Observation::Resync => {
            metrics
                .probe
                .resyncs
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}
