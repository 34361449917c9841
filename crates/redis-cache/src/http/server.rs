//! Serving connections: the accept loop, the cap on open connections, and the
//! timeouts that keep slow, idle or stalled clients from holding descriptors.
//!
//! `axum::serve` sets no timer: a client that sends its headers a byte a
//! second, or connects and sends nothing, keeps its descriptor for ever, and a
//! few hundred of them exhaust the process's descriptors. Here each
//! connection's task watches it:
//! - a request's headers must have arrived within `header_timeout` of its
//!   first byte (of the accept, for a connection's first request);
//! - a keep-alive connection may wait `idle_timeout` for its next request;
//! - a body must have arrived within `body_timeout` of its headers
//!   ([`BodyDeadline`], enforced where bodies are read);
//! - at most `max_connections` are open. At the cap the connection quiet the
//!   longest makes room (it has no request in flight, so closing it loses
//!   nothing); when every one is busy, a few more are accepted in overload
//!   mode, which serves the health endpoints and answers anything else 503
//!   ([`Overloaded`]); past those, accepting waits for a connection to close.
//!
//! Closing a connection never cuts a request short: one with a request in
//! flight is only ever closed by shutdown's grace period.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::telemetry::http_metrics::{ConnectionClosed, HttpMetrics};

/// The timeouts and the connection cap; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl ServerLimits {
    /// Connections kept for overload mode out of `max_connections`: enough
    /// for probes and scrapes while every other connection is busy.
    fn overload_reserve(&self) -> usize {
        (self.max_connections / 32).clamp(1, 64)
    }
}

/// When a request's body must have arrived; in the request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub Instant);

/// Marks a request that came in while every connection was busy: only the
/// health endpoints answer it; in the request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Overloaded;

/// Serves `router` on `listener` until `stop` fires, then lets the requests
/// in flight finish (each connection closes after its current request) and
/// returns once every connection is closed. Dropping the future closes them
/// all at once.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    metrics: Arc<HttpMetrics>,
    stop: CancellationToken,
) {
    let open = Arc::new(Registry::default());
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let normal_max = limits.max_connections - limits.overload_reserve();
    // Owns every connection task, so dropping `serve` closes them all.
    let mut tasks = JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit.expect("never closed"),
        };
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    drop(permit);
                    pause_after_accept_error(&err).await;
                    continue;
                }
            },
        };
        // Small answers go out at once rather than after Nagle's delay.
        let _ = stream.set_nodelay(true);
        let overloaded = open.normal() >= normal_max && !open.evict_quietest();
        let conn = open.add(!overloaded, stream.as_raw_fd(), limits.header_timeout);
        let (router, metrics, stop, open) =
            (router.clone(), metrics.clone(), stop.clone(), open.clone());
        tasks.spawn(async move {
            let _open = metrics.http_connection_opened();
            if overloaded {
                metrics.http_connection_overloaded();
            }
            serve_connection(stream, router, &conn, limits, overloaded, &metrics, stop).await;
            open.remove(&conn);
            drop(permit);
        });
        // Reap finished tasks as we go, so the set stays as small as the
        // number of open connections.
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

/// Accepting failed: a connection reset before it was accepted is nothing;
/// running out of descriptors or memory (which the cap should prevent) is
/// worth a pause, rather than a busy loop of failing accepts.
async fn pause_after_accept_error(err: &io::Error) {
    use io::ErrorKind::*;
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    ) {
        return;
    }
    tracing::warn!(error = %err, "cannot accept a connection; pausing 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    conn: &Arc<Conn>,
    limits: ServerLimits,
    overloaded: bool,
    metrics: &HttpMetrics,
    stop: CancellationToken,
) {
    let service = {
        let conn = conn.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let started = conn.request_started();
            let mut request = request.map(Body::new);
            if may_have_body(&request) {
                let deadline = BodyDeadline(Instant::now() + limits.body_timeout);
                request.extensions_mut().insert(deadline);
            }
            if overloaded {
                request.extensions_mut().insert(Overloaded);
            }
            let response = router.clone().oneshot(request);
            async move {
                let response = response.await;
                drop(started);
                response
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The watch below keeps time; hyper's own header timer would start at
    // the end of each response and so also cut idle keep-alive short.
    builder.timer(TokioTimer::new()).header_read_timeout(None);
    // In overload mode: one request per connection, freeing it at once.
    builder.keep_alive(!overloaded);
    let served = builder.serve_connection(
        TokioIo::new(Watched {
            stream,
            conn: conn.clone(),
        }),
        service,
    );
    tokio::pin!(served);
    let mut stopping = false;
    // Re-armed only when a deadline comes earlier than the one it is set
    // for. As requests come and go the deadline moves later, and a timer
    // that fires early finds the connection busy or not due yet and is set
    // again: a busy connection costs no timer work per request.
    let timer = tokio::time::sleep_until(at(conn.armed.load(Ordering::Relaxed)));
    tokio::pin!(timer);
    let set = |timer: Pin<&mut tokio::time::Sleep>, deadline: u64| {
        conn.armed.store(deadline, Ordering::Relaxed);
        timer.reset(at(deadline));
    };
    // Made once: each poll of a fresh one would register anew with the
    // token every connection shares.
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    loop {
        if let Some((deadline, _)) = conn.due(&limits)
            && deadline < conn.armed.load(Ordering::Relaxed)
        {
            set(timer.as_mut(), deadline);
        }
        tokio::select! {
            result = served.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                return;
            }
            _ = &mut stopped, if !stopping => {
                stopping = true;
                served.as_mut().graceful_shutdown();
                if conn.is_quiet() {
                    return;
                }
            }
            // Bytes waiting in the socket are a request on its way that the
            // connection has not read yet: it is not quiet.
            _ = conn.evict.notified() => {
                if conn.is_quiet() && !has_input(conn.fd) {
                    metrics.http_connection_closed(ConnectionClosed::Evicted);
                    return;
                }
                // Busy after all: it may be chosen again later.
                conn.evicted.store(false, Ordering::Relaxed);
            }
            _ = conn.arriving.notified() => {}
            () = &mut timer => {
                if let Some(reason) = conn.expired(&limits) {
                    metrics.http_connection_closed(reason);
                    return;
                }
                // Busy (no deadline while a request is in flight: look
                // again later), or the deadline moved on.
                let next = conn
                    .due(&limits)
                    .map_or(clock() + millis(limits.idle_timeout), |(deadline, _)| deadline);
                set(timer.as_mut(), next);
            }
        }
    }
}

/// Whether a body follows the request's headers (RFC 9112 §6.3).
fn may_have_body(request: &Request) -> bool {
    let headers = request.headers();
    headers.contains_key(axum::http::header::TRANSFER_ENCODING)
        || headers
            .get(axum::http::header::CONTENT_LENGTH)
            .is_some_and(|length| length != "0")
}

/// Whether bytes are waiting to be read on socket `fd`.
fn has_input(fd: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: a non-blocking peek of one byte into a local. Called only by
    // the connection's own task, which keeps the socket open meanwhile.
    let peeked = unsafe {
        libc::recv(
            fd,
            (&raw mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    peeked > 0
}

/// The open connections, for choosing one to close at the cap.
#[derive(Default)]
struct Registry {
    state: Mutex<RegistryState>,
}

#[derive(Default)]
struct RegistryState {
    next_id: u64,
    conns: HashMap<u64, Arc<Conn>>,
    /// Connections not in overload mode.
    normal: usize,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, RegistryState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, normal: bool, fd: RawFd, header_timeout: Duration) -> Arc<Conn> {
        let mut state = self.lock();
        state.next_id += 1;
        let conn = Arc::new(Conn::new(state.next_id, normal, fd, header_timeout));
        state.conns.insert(conn.id, conn.clone());
        state.normal += usize::from(normal);
        conn
    }

    fn remove(&self, conn: &Conn) {
        let mut state = self.lock();
        if state.conns.remove(&conn.id).is_some() {
            state.normal -= usize::from(conn.normal);
        }
    }

    fn normal(&self) -> usize {
        self.lock().normal
    }

    /// Asks the normal connection that has been quiet the longest to close,
    /// and true if there was one. Its slot is taken over by the connection
    /// just accepted, so the count may exceed the cap for the moment it takes
    /// that one to close (the permits still bound the total).
    fn evict_quietest(&self) -> bool {
        let state = self.lock();
        let quietest = state
            .conns
            .values()
            .filter(|conn| conn.normal && conn.is_quiet() && !conn.evicted.load(Ordering::Relaxed))
            .min_by_key(|conn| conn.last_active.load(Ordering::Relaxed));
        match quietest {
            Some(conn) => {
                conn.evicted.store(true, Ordering::Relaxed);
                conn.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// What one connection is doing, shared by its task, its socket wrapper and
/// its service. Times are milliseconds on [`clock`].
struct Conn {
    id: u64,
    normal: bool,
    /// The socket, for peeking at unread bytes; open as long as its task runs.
    fd: RawFd,
    header_timeout: u64,
    /// What the connection's timer is set for.
    armed: AtomicU64,
    accepted: u64,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    /// When the last request ended (or the connection was accepted).
    idle_since: AtomicU64,
    /// When the first byte of the next request was read; 0 while none was.
    arriving_since: AtomicU64,
    /// Last read, write or end of request: the eviction order.
    last_active: AtomicU64,
    /// A write is waiting for the client to read.
    writing: AtomicBool,
    evicted: AtomicBool,
    /// Signalled by the accept loop to make room.
    evict: Notify,
    /// Signalled when a request begins to arrive and its header deadline
    /// comes before the one the connection's timer is set for.
    arriving: Notify,
}

impl Conn {
    fn new(id: u64, normal: bool, fd: RawFd, header_timeout: Duration) -> Self {
        let now = clock();
        let header_timeout = millis(header_timeout);
        Conn {
            id,
            normal,
            fd,
            header_timeout,
            armed: AtomicU64::new(now + header_timeout),
            accepted: now,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(now),
            arriving_since: AtomicU64::new(0),
            last_active: AtomicU64::new(now),
            writing: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
            arriving: Notify::new(),
        }
    }

    /// No request in flight and nothing waiting to be written: closing the
    /// connection now loses nothing.
    fn is_quiet(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && !self.writing.load(Ordering::Acquire)
    }

    fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.arriving_since.store(0, Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    fn read_some(&self) {
        let now = clock();
        self.last_active.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) == 0
            && self
                .arriving_since
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            && now + self.header_timeout < self.armed.load(Ordering::Relaxed)
        {
            self.arriving.notify_one();
        }
    }

    /// When the connection is to be closed if nothing happens, and why.
    fn due(&self, limits: &ServerLimits) -> Option<(u64, ConnectionClosed)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let header = millis(limits.header_timeout);
        let arriving = self.arriving_since.load(Ordering::Relaxed);
        Some(if arriving != 0 {
            (arriving + header, ConnectionClosed::HeaderTimeout)
        } else if self.requests.load(Ordering::Relaxed) == 0 {
            (self.accepted + header, ConnectionClosed::HeaderTimeout)
        } else {
            let idle = self.idle_since.load(Ordering::Relaxed);
            (
                idle + millis(limits.idle_timeout),
                ConnectionClosed::IdleTimeout,
            )
        })
    }

    fn expired(&self, limits: &ServerLimits) -> Option<ConnectionClosed> {
        self.due(limits)
            .filter(|(at, _)| *at <= clock())
            .map(|(_, reason)| reason)
    }
}

/// A request being served on a connection, until its response is ready.
struct RequestGuard(Arc<Conn>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let now = clock();
        self.0.idle_since.store(now, Ordering::Relaxed);
        self.0.last_active.store(now, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The socket, telling its [`Conn`] when bytes arrive and when a write waits
/// on the client.
struct Watched {
    stream: TcpStream,
    conn: Arc<Conn>,
}

impl Watched {
    fn wrote<T>(&self, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        self.conn
            .writing
            .store(poll.is_pending(), Ordering::Release);
        if poll.is_ready() {
            self.conn.last_active.store(clock(), Ordering::Relaxed);
        }
        poll
    }
}

/// Longest a closed connection's unread input is drained.
const LINGER: Duration = Duration::from_secs(2);

impl Drop for Watched {
    /// A socket closed with unread input makes the kernel send a reset, and a
    /// client still sending (a body the server refused, 413, without reading
    /// it) may see the reset before the response it was sent. As web servers
    /// do ("lingering close"), such a socket is first shut down for writing
    /// and its input read and discarded until the client closes, for at
    /// most [`LINGER`].
    fn drop(&mut self) {
        if !has_input(self.conn.fd) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // SAFETY: dup(2) of the socket this value owns, open until the end
        // of this drop; the new descriptor is owned by `copy` alone.
        let copy = unsafe { libc::dup(self.conn.fd) };
        if copy < 0 {
            return;
        }
        // SAFETY: `copy` is a fresh descriptor of a TCP socket, owned here.
        let std_stream =
            unsafe { <std::net::TcpStream as std::os::fd::FromRawFd>::from_raw_fd(copy) };
        runtime.spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let Ok(mut stream) = TcpStream::from_std(std_stream) else {
                return;
            };
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 8192];
            let _ = tokio::time::timeout(LINGER, async {
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
        });
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.read_some();
        }
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.wrote(poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.wrote(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_flush(cx);
        self.wrote(poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The most connections that fit in the process's descriptor limit, keeping
/// `reserved` descriptors for everything else (database, Redis, files): the
/// soft limit is first raised to the hard one, as most servers do. Returns
/// `wanted`, or less.
pub fn fit_to_descriptors(wanted: usize, reserved: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    let available = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return wanted;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
        limit.rlim_cur
    };
    let available = usize::try_from(available).unwrap_or(usize::MAX);
    wanted.min(available.saturating_sub(reserved).max(MIN_CONNECTIONS))
}

/// Fewest connections served, however low the descriptor limit.
const MIN_CONNECTIONS: usize = 8;

/// The instant connection times are counted from.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The instant `ms` milliseconds of [`clock`] stand for.
fn at(ms: u64) -> Instant {
    epoch() + Duration::from_millis(ms.saturating_sub(1))
}

/// Milliseconds since [`epoch`], never 0 (0 means "none" in [`Conn`]).
fn clock() -> u64 {
    millis(epoch().elapsed()) + 1
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX / 2)
}
