//! One Redis connection seen from one side: its requests and replies as
//! byte streams, commands paired with their replies in order (pipelining),
//! transactions (`MULTI` … `EXEC`), and pub/sub mode (confirmations and
//! messages are not replies to a command).

use std::collections::VecDeque;

use crate::commands::{self, Command, Reading, RecentNames, Role, Subscription};
use crate::resp::{KEEP, Next, Stream, Value};

/// Most commands awaiting a reply on one connection (deep pipelines are
/// far shorter).
const MAX_PENDING: usize = 100_000;

/// What a connection tells about the traffic, as it finds it.
pub trait Observer {
    /// A command and its outcome.
    fn command(&mut self, done: &Completed);
    /// Commands seen in one request burst (one syscall).
    fn pipeline(&mut self, depth: usize);
    /// A pub/sub message delivered to this connection.
    fn delivered(&mut self, channel: &[u8]);
    /// A `PUBLISH` answered.
    fn published(&mut self, channel: &[u8]);
    /// The framing of a stream was lost and found again.
    fn resync(&mut self);
    /// Bytes not captured that the parser skipped, knowing their length
    /// (inside bulk strings), without losing the framing.
    fn skipped(&mut self, bytes: u64);
}

/// What the connection told, as a list (tests, and callers that look at
/// everything afterwards).
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    Command(Completed),
    Pipeline(usize),
    Delivered { channel: Vec<u8> },
    Published { channel: Vec<u8> },
    Resync,
    Skipped(u64),
}

impl Observer for Vec<Observation> {
    fn command(&mut self, done: &Completed) {
        self.push(Observation::Command(done.clone()));
    }
    fn pipeline(&mut self, depth: usize) {
        self.push(Observation::Pipeline(depth));
    }
    fn delivered(&mut self, channel: &[u8]) {
        self.push(Observation::Delivered {
            channel: channel.to_vec(),
        });
    }
    fn published(&mut self, channel: &[u8]) {
        self.push(Observation::Published {
            channel: channel.to_vec(),
        });
    }
    fn resync(&mut self) {
        self.push(Observation::Resync);
    }
    fn skipped(&mut self, bytes: u64) {
        self.push(Observation::Skipped(bytes));
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Completed {
    pub command: Command,
    pub status: Status,
    /// Key lookups, as Redis counts them in `keyspace_hits`/`_misses`.
    pub lookups: commands::Lookups,
    /// Refused by Redis before it ran.
    pub rejected: Option<commands::Rejection>,
    /// The error's first word (`ERR`, `WRONGTYPE`, …).
    pub error: Option<String>,
    pub sent_ns: u64,
    pub answered_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Hit,
    Miss,
    Ok,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Hit => "hit",
            Status::Miss => "miss",
            Status::Ok => "ok",
            Status::Error => "error",
        }
    }
}

#[derive(Debug, Clone)]
struct Pending {
    command: Command,
    sent_ns: u64,
    /// Sent between `MULTI` and `EXEC`: answered `QUEUED`, run by `EXEC`.
    in_transaction: bool,
    /// (Un)subscribe confirmations still expected; `None` for an
    /// unsubscribe from all, until its first confirmation (when how many
    /// subscriptions it ends is known).
    confirmations: Option<u32>,
}

#[derive(Debug)]
pub struct Connection {
    requests: Stream,
    replies: Stream,
    reading: Reading,
    names: RecentNames,
    pending: VecDeque<Pending>,
    /// A `MULTI` was sent and no `EXEC` or `DISCARD` yet.
    transaction_open: bool,
    /// Commands answered `QUEUED`, waiting for `EXEC`.
    queued: Vec<Pending>,
    /// RESP2 pub/sub mode: arrays starting with `message` are pushes.
    subscribed: bool,
    /// Commands parsed so far from the request syscall being read.
    burst: usize,
    /// Channels, patterns and shard channels subscribed to, from the
    /// confirmations: an unsubscribe from all of a kind is confirmed once
    /// per subscription of that kind (once if there is none).
    subscriptions: [std::collections::HashSet<Vec<u8>>; 3],
}

impl Default for Connection {
    fn default() -> Self {
        Connection::new(Reading { keys: true })
    }
}

/// Reports the bytes `stream` skipped without seeing them.
fn skipped(skipped: u64, out: &mut impl Observer) {
    if skipped > 0 {
        out.skipped(skipped);
    }
}

/// What a push (or, in RESP2 pub/sub mode, an array) is, by its first word.
fn push_kind(value: Option<&Value>) -> Option<PushKind> {
    let word = value?.as_bytes()?;
    let mut lower = [0u8; 12];
    if word.len() > lower.len() {
        return Some(PushKind::Other);
    }
    for (slot, b) in lower.iter_mut().zip(word) {
        *slot = b.to_ascii_lowercase();
    }
    let confirmation = |which, subscribing| PushKind::Confirmation { which, subscribing };
    Some(match &lower[..word.len()] {
        b"message" | b"smessage" => PushKind::Message,
        b"pmessage" => PushKind::PatternMessage,
        b"subscribe" => confirmation(Subscription::Channel, true),
        b"psubscribe" => confirmation(Subscription::Pattern, true),
        b"ssubscribe" => confirmation(Subscription::Shard, true),
        b"unsubscribe" => confirmation(Subscription::Channel, false),
        b"punsubscribe" => confirmation(Subscription::Pattern, false),
        b"sunsubscribe" => confirmation(Subscription::Shard, false),
        _ => PushKind::Other,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PushKind {
    Message,
    PatternMessage,
    Confirmation {
        which: Subscription,
        subscribing: bool,
    },
    Other,
}

impl Connection {
    /// A connection whose commands are read as `reading` says.
    pub fn new(reading: Reading) -> Self {
        Connection {
            requests: Stream::requests(),
            replies: Stream::replies(),
            reading,
            names: RecentNames::default(),
            pending: VecDeque::new(),
            transaction_open: false,
            queued: Vec::new(),
            subscribed: false,
            burst: 0,
            subscriptions: Default::default(),
        }
    }

    /// Bytes the client sent in one syscall (`length` moved, the first
    /// `captured` of them seen).
    pub fn requests(
        &mut self,
        captured: &[u8],
        length: usize,
        at_ns: u64,
        out: &mut impl Observer,
    ) {
        self.request_part(captured, length - captured.len(), true, at_ns, out);
    }

    /// Part of a request syscall: `captured` bytes, then `missed` bytes not
    /// captured; `last` when the syscall ends there (its commands form one
    /// burst).
    pub fn request_part(
        &mut self,
        captured: &[u8],
        missed: usize,
        last: bool,
        at_ns: u64,
        out: &mut impl Observer,
    ) {
        let reading = self.reading;
        // Taken out while its commands are queued (see `reply_part`).
        let mut requests = std::mem::take(&mut self.requests);
        let mut names = std::mem::take(&mut self.names);
        let mut feed = requests.feed(captured, missed);
        loop {
            // The common shape first, read in place; the rest as values.
            let words = feed.next_words(|words| Command::from_words_of(words, reading, &mut names));
            let command = match words {
                Some(command) => command,
                None => match feed.next_value(KEEP) {
                    Next::Incomplete => break,
                    Next::Resync => {
                        out.resync();
                        continue;
                    }
                    Next::Value(value) => Command::from_request(value, reading),
                },
            };
            if let Some(command) = command {
                self.burst += 1;
                self.sent(command, at_ns);
            }
        }
        skipped(feed.take_skipped(), out);
        drop(feed);
        self.requests = requests;
        self.names = names;
        if last && self.burst > 0 {
            out.pipeline(std::mem::take(&mut self.burst));
        }
    }

    fn sent(&mut self, command: Command, at_ns: u64) {
        let role = command.name.role();
        let in_transaction =
            self.transaction_open && !matches!(role, Role::Exec | Role::Discard | Role::Multi);
        match role {
            Role::Multi => self.transaction_open = true,
            Role::Exec | Role::Discard => self.transaction_open = false,
            _ => {}
        }
        let channels = u32::try_from(command.args.len()).unwrap_or(u32::MAX);
        let confirmations = match role {
            Role::Subscribe(_) => Some(channels.max(1)),
            Role::Unsubscribe(_) if channels == 0 => None,
            Role::Unsubscribe(_) => Some(channels),
            _ => Some(0),
        };
        // Replies that never come (CLIENT REPLY OFF, a reply stream lost)
        // must not grow this without bound: the oldest are given up.
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back(Pending {
            command,
            sent_ns: at_ns,
            in_transaction,
            confirmations,
        });
    }

    /// Bytes the server sent back in one syscall.
    pub fn replies(&mut self, captured: &[u8], length: usize, at_ns: u64, out: &mut impl Observer) {
        self.reply_part(captured, length - captured.len(), at_ns, out);
    }

    /// Part of a reply syscall: `captured` bytes, then `missed` not
    /// captured.
    pub fn reply_part(
        &mut self,
        captured: &[u8],
        missed: usize,
        at_ns: u64,
        out: &mut impl Observer,
    ) {
        // The stream is taken out while its values are handled (handling
        // them changes the rest of the connection).
        let mut replies = std::mem::take(&mut self.replies);
        let mut feed = replies.feed(captured, missed);
        loop {
            // Of a bulk string only its length matters, but where a push or
            // a confirmation may come, whose words name channels.
            let keep = if self.subscribed || self.expects_confirmation() {
                KEEP
            } else {
                0
            };
            match feed.next_value(keep) {
                Next::Incomplete => break,
                Next::Resync => {
                    // Which reply answers which command is no longer known:
                    // the commands waiting are counted without an outcome.
                    out.resync();
                    let waiting: Vec<Pending> = self
                        .pending
                        .drain(..)
                        .chain(self.queued.drain(..))
                        .collect();
                    for pending in waiting {
                        out.command(&Completed {
                            command: pending.command,
                            status: Status::Ok,
                            lookups: commands::Lookups::default(),
                            rejected: None,
                            error: None,
                            sent_ns: pending.sent_ns,
                            answered_ns: at_ns,
                        });
                    }
                }
                Next::Value(value) => self.reply(value, at_ns, out),
            }
        }
        skipped(feed.take_skipped(), out);
        drop(feed);
        self.replies = replies;
    }

    fn reply(&mut self, value: Value, at_ns: u64, out: &mut impl Observer) {
        // Out-of-band: RESP3 pushes, and RESP2 messages in pub/sub mode.
        let push = match &value {
            Value::Push(items) => Some(items),
            Value::Array(items) if self.subscribed || self.expects_confirmation() => {
                match push_kind(items.first()) {
                    Some(PushKind::Other) | None => None,
                    Some(_) => Some(items),
                }
            }
            _ => None,
        };
        if let Some(items) = push {
            self.push(items, at_ns, out);
            return;
        }
        let Some(pending) = self.pending.pop_front() else {
            // A reply to a command sent before the probe started.
            return;
        };
        if pending.in_transaction {
            match &value {
                Value::Simple(s) if s.as_slice().eq_ignore_ascii_case(b"QUEUED") => {
                    self.queued.push(pending);
                }
                _ => self.complete(pending, &value, at_ns, out),
            }
            return;
        }
        let role = pending.command.name.role();
        self.complete(pending, &value, at_ns, out);
        match role {
            Role::Exec => {
                let queued = std::mem::take(&mut self.queued);
                if let Value::Array(results) = &value {
                    for (pending, result) in queued.into_iter().zip(results) {
                        self.complete(pending, result, at_ns, out);
                    }
                }
                // A nil EXEC (a WATCHed key changed) or EXECABORT ran nothing.
            }
            Role::Discard => self.queued.clear(),
            _ => {}
        }
    }

    fn expects_confirmation(&self) -> bool {
        self.pending
            .front()
            .is_some_and(|p| p.confirmations != Some(0))
    }

    fn push(&mut self, items: &[Value], at_ns: u64, out: &mut impl Observer) {
        match push_kind(items.first()) {
            Some(PushKind::Message) => {
                if let Some(channel) = items.get(1).and_then(Value::as_bytes) {
                    out.delivered(channel);
                }
            }
            Some(PushKind::PatternMessage) => {
                if let Some(channel) = items.get(2).and_then(Value::as_bytes) {
                    out.delivered(channel);
                }
            }
            Some(PushKind::Confirmation { which, subscribing }) => {
                let left = match items.get(2) {
                    Some(Value::Integer(n)) => *n,
                    _ => 0,
                };
                self.subscribed = left > 0;
                let subscriptions = &mut self.subscriptions[which as usize];
                let known = u32::try_from(subscriptions.len()).unwrap_or(u32::MAX);
                if let Some(channel) = items.get(1).and_then(Value::as_bytes) {
                    if subscribing {
                        subscriptions.insert(channel.to_vec());
                    } else {
                        subscriptions.remove(channel);
                    }
                }
                let confirms = |role: Role| match role {
                    Role::Subscribe(kind) => subscribing && kind == which,
                    Role::Unsubscribe(kind) => !subscribing && kind == which,
                    _ => false,
                };
                let done = match self.pending.front_mut() {
                    Some(front) if confirms(front.command.name.role()) => {
                        // Unsubscribing from all: one confirmation per
                        // subscription there was, one if there was none.
                        let n = front.confirmations.get_or_insert(known.max(1));
                        *n = n.saturating_sub(1);
                        *n == 0
                    }
                    _ => false,
                };
                if done && let Some(pending) = self.pending.pop_front() {
                    self.complete(pending, &Value::simple(b""), at_ns, out);
                }
            }
            // Client-side caching invalidations and the like.
            Some(PushKind::Other) | None => {}
        }
    }

    fn complete(&mut self, pending: Pending, reply: &Value, at_ns: u64, out: &mut impl Observer) {
        let command = pending.command;
        let lookups = commands::key_lookups(&command, reply);
        let (status, error, rejected) = match reply {
            Value::Error(message) => (
                Status::Error,
                Some(crate::resp::error_code(message).to_owned()),
                commands::rejection(&command, message),
            ),
            _ => match commands::found(command.name, reply) {
                Some(true) => (Status::Hit, None, None),
                Some(false) => (Status::Miss, None, None),
                None => (Status::Ok, None, None),
            },
        };
        if command.name.role() == Role::Publish
            && let Some(channel) = command.args.first()
        {
            out.published(channel);
        }
        out.command(&Completed {
            command,
            status,
            lookups,
            rejected,
            error,
            sent_ns: pending.sent_ns,
            answered_ns: at_ns,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(words: &[&str]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", words.len()).into_bytes();
        for w in words {
            out.extend(format!("${}\r\n{w}\r\n", w.len()).bytes());
        }
        out
    }

    fn run(exchanges: &[(&[u8], &[u8])]) -> Vec<Observation> {
        let mut conn = Connection::default();
        let mut out = Vec::new();
        for (i, (request, reply)) in exchanges.iter().enumerate() {
            let t = i as u64 * 10;
            if !request.is_empty() {
                conn.requests(request, request.len(), t, &mut out);
            }
            if !reply.is_empty() {
                conn.replies(reply, reply.len(), t + 5, &mut out);
            }
        }
        out
    }

    fn completed(out: &[Observation]) -> Vec<(String, Status, u64, u64)> {
        out.iter()
            .filter_map(|o| match o {
                Observation::Command(c) => Some((
                    c.command.name.to_string(),
                    c.status,
                    c.lookups.hits,
                    c.lookups.misses,
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn pipelined_reads_pair_in_order_with_hits_and_misses() {
        let mut request = resp(&["GET", "a"]);
        request.extend(resp(&["GET", "b"]));
        request.extend(resp(&["MGET", "a", "b", "c"]));
        let out = run(&[(
            &request,
            b"$1\r\nx\r\n$-1\r\n*3\r\n$1\r\nx\r\n$-1\r\n$-1\r\n",
        )]);
        assert_eq!(
            completed(&out),
            vec![
                ("get".into(), Status::Hit, 1, 0),
                ("get".into(), Status::Miss, 0, 1),
                ("mget".into(), Status::Ok, 1, 2),
            ]
        );
        assert!(out.contains(&Observation::Pipeline(3)));
    }

    #[test]
    fn one_syscall_in_several_records_is_one_burst() {
        let mut request = Vec::new();
        for i in 0..300 {
            request.extend(resp(&["SET", &format!("key:{i}"), &"v".repeat(100)]));
        }
        let mut conn = Connection::default();
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = request.chunks(16_384).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            conn.request_part(chunk, 0, i + 1 == chunks.len(), 0, &mut out);
        }
        assert!(chunks.len() > 1);
        assert_eq!(out, vec![Observation::Pipeline(300)]);
    }

    #[test]
    fn a_value_past_the_capture_limit_is_skipped_by_its_length() {
        let mut conn = Connection::default();
        let mut out = Vec::new();
        // A 2 MiB SET of which the first MiB was captured, then a GET.
        let value = 2 << 20;
        let head = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${value}\r\n");
        let total = head.len() + value + 2;
        let mut captured = head.into_bytes();
        captured.resize(1 << 20, b'x');
        let missed = total - captured.len();
        conn.request_part(&captured, missed, true, 0, &mut out);
        conn.requests(&resp(&["GET", "k"]), 13 + 7, 1, &mut out);
        conn.replies(b"+OK\r\n$1\r\nv\r\n", 12, 2, &mut out);
        let skipped: u64 = out
            .iter()
            .map(|o| match o {
                Observation::Skipped(n) => *n,
                _ => 0,
            })
            .sum();
        assert_eq!(skipped as usize, total - (1 << 20));
        assert!(!out.contains(&Observation::Resync));
        assert_eq!(
            completed(&out),
            vec![
                ("set".into(), Status::Ok, 0, 0),
                ("get".into(), Status::Hit, 1, 0)
            ]
        );
    }

    #[test]
    fn errors_by_prefix() {
        let out = run(&[(
            &resp(&["INCR", "s"]),
            b"-WRONGTYPE Operation against a key\r\n",
        )]);
        match &out[1] {
            Observation::Command(c) => {
                assert_eq!(
                    (c.status, c.error.as_deref()),
                    (Status::Error, Some("WRONGTYPE"))
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn transactions_count_queued_commands_when_exec_runs_them() {
        let out = run(&[
            (&resp(&["MULTI"]), b"+OK\r\n"),
            (&resp(&["SET", "a", "1"]), b"+QUEUED\r\n"),
            (&resp(&["GET", "a"]), b"+QUEUED\r\n"),
            (&resp(&["EXEC"]), b"*2\r\n+OK\r\n$1\r\n1\r\n"),
        ]);
        assert_eq!(
            completed(&out),
            vec![
                ("multi".into(), Status::Ok, 0, 0),
                ("exec".into(), Status::Ok, 0, 0),
                ("set".into(), Status::Ok, 0, 0),
                ("get".into(), Status::Hit, 1, 0),
            ]
        );
        let discarded = run(&[
            (&resp(&["MULTI"]), b"+OK\r\n"),
            (&resp(&["SET", "a", "1"]), b"+QUEUED\r\n"),
            (&resp(&["DISCARD"]), b"+OK\r\n"),
        ]);
        assert_eq!(
            completed(&discarded)
                .iter()
                .map(|c| c.0.as_str())
                .collect::<Vec<_>>(),
            ["multi", "discard"],
            "discarded commands never ran"
        );
    }

    #[test]
    fn pub_sub_confirmations_and_messages_are_not_replies() {
        let out = run(&[
            (
                &resp(&["SUBSCRIBE", "a", "b"]),
                b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n",
            ),
            (b"", b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n"),
            (&resp(&["PING"]), b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
            (
                &resp(&["UNSUBSCRIBE"]),
                b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n",
            ),
            (&resp(&["GET", "k"]), b"$-1\r\n"),
        ]);
        assert_eq!(
            completed(&out)
                .iter()
                .map(|c| c.0.as_str())
                .collect::<Vec<_>>(),
            ["subscribe", "ping", "unsubscribe", "get"]
        );
        assert!(out.contains(&Observation::Delivered {
            channel: b"a".to_vec()
        }));
    }

    #[test]
    fn resp3_pushes() {
        let out = run(&[
            (&resp(&["HELLO", "3"]), b"%1\r\n+server\r\n+redis\r\n"),
            (
                &resp(&["SUBSCRIBE", "c"]),
                b">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n",
            ),
            (b"", b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n"),
            (&resp(&["PUBLISH", "c", "y"]), b":1\r\n"),
        ]);
        assert!(out.contains(&Observation::Delivered {
            channel: b"c".to_vec()
        }));
        assert!(out.contains(&Observation::Published {
            channel: b"c".to_vec()
        }));
        assert_eq!(completed(&out).len(), 3);
    }
}
