//! What the probe knows about Redis commands: how `INFO commandstats` names
//! them, where their key is, which are reads (a nil or empty answer is a
//! miss), and which carry secrets.

use crate::resp::Value;

/// A command as sent, reduced to what the probe records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// As `INFO commandstats` names it: lower case, with the subcommand of
    /// container commands (`config|get`, `client|setname`).
    pub name: String,
    /// The first key, if the command has one (cut to [`crate::resp::KEEP`]).
    pub key: Option<Vec<u8>>,
    /// Words sent, the name (and subcommand) included.
    pub argc: usize,
    /// How its reply tells its key lookups, if it makes any Redis counts.
    pub lookup: Option<Lookup>,
    /// Keys it looks up (one for most; `MGET`, `EXISTS`, `SINTER`… more).
    pub keys: usize,
    /// The channels of pub/sub commands; empty for every other command.
    pub args: Vec<Vec<u8>>,
}

/// Commands whose arguments are channels.
const PUB_SUB: [&str; 8] = [
    "subscribe",
    "psubscribe",
    "ssubscribe",
    "unsubscribe",
    "punsubscribe",
    "sunsubscribe",
    "publish",
    "spublish",
];

/// Container commands, whose subcommand is part of the name in `INFO
/// commandstats`.
const CONTAINERS: [&str; 15] = [
    "acl", "client", "cluster", "command", "config", "function", "latency", "memory", "module",
    "object", "pubsub", "script", "slowlog", "xgroup", "xinfo",
];

/// Commands without a key in first position.
const KEYLESS: [&str; 32] = [
    "ping",
    "echo",
    "info",
    "auth",
    "hello",
    "select",
    "multi",
    "exec",
    "discard",
    "quit",
    "reset",
    "subscribe",
    "unsubscribe",
    "psubscribe",
    "punsubscribe",
    "ssubscribe",
    "sunsubscribe",
    "publish",
    "spublish",
    "flushall",
    "flushdb",
    "dbsize",
    "time",
    "save",
    "bgsave",
    "lastsave",
    "shutdown",
    "wait",
    "eval",
    "evalsha",
    "fcall",
    "readonly",
];

/// How a read's answer tells a hit from a miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// One key: nil (or an empty aggregate) is a miss.
    Single,
    /// A size: 0 is a miss (Redis never keeps an empty list, set or hash).
    Size,
    /// `TTL` and friends: -2 is a miss.
    Ttl,
    /// `TYPE`: `none` is a miss.
    Type,
}

/// Whether a single-key read found what it asked for (its status, `hit` or
/// `miss`), from its answer; `None` for other commands and answers.
pub fn found(name: &str, reply: &Value) -> Option<bool> {
    match (read_kind(name)?, reply) {
        (_, Value::Error(_)) => None,
        (Read::Single, v) => Some(!empty(v)),
        (Read::Size, Value::Integer(n)) => Some(*n != 0),
        (Read::Ttl, Value::Integer(n)) => Some(*n != -2),
        (Read::Type, Value::Simple(t) | Value::Bulk(t)) => Some(t != b"none"),
        _ => None,
    }
}

/// Reads whose answer says whether the key was there.
fn read_kind(name: &str) -> Option<Read> {
    match name {
        "get" | "getex" | "getdel" | "hget" | "hgetall" | "lrange" | "smembers" | "zrange"
        | "lindex" | "zscore" | "hkeys" | "hvals" | "getrange" | "substr" => Some(Read::Single),
        "llen" | "scard" | "zcard" | "hlen" => Some(Read::Size),
        "ttl" | "pttl" | "expiretime" | "pexpiretime" => Some(Read::Ttl),
        "type" => Some(Read::Type),
        _ => None,
    }
}

/// How a command's reply tells the key lookups Redis counts for it in
/// `keyspace_hits` and `keyspace_misses`: every read lookup of a key
/// (`lookupKeyRead` in Redis' `db.c`), one per key argument, whatever the
/// command's type, writes included (`GETDEL`, `SET … GET`). The table is
/// Redis 7.0's; `docs/probe.md` lists the reads it leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// One key: nil is a miss, anything else a hit.
    Nil,
    /// One key: nil or an empty aggregate is a miss (Redis keeps no empty
    /// list, set, hash or sorted set).
    Empty,
    /// One key: a size; 0 is a miss.
    Zero,
    /// One key: `-2` is a miss (`TTL` and its kind).
    Ttl,
    /// One key: `none` is a miss.
    Type,
    /// `keys` keys; the reply is how many were found (`EXISTS`, `TOUCH`).
    Counted,
    /// `keys` keys, one answer each, nil for a missing one (`MGET`).
    PerKey,
    /// One key: a field or member found (non-nil, non-zero, non-empty) is a
    /// hit; "nothing" may be a missing key or only a missing field: unknown.
    Found,
    /// One key: a position (0 included) is a hit; nil or empty unknown.
    Position,
    /// One key: something in the asked window is a hit; nothing a miss when
    /// the window is one any existing key fills (`LRANGE k 0 -1`,
    /// `LINDEX k 0`, `ZRANGEBYSCORE k -inf +inf`), unknown otherwise.
    Window { nothing_is_miss: bool },
    /// `keys` keys looked up, the reply telling little per key (`SINTER`,
    /// `SUNION`, `ZUNIONSTORE`…): unknown, except that an empty answer is a
    /// miss for every key when `empty_is_miss` (a union), and a non-empty
    /// one a hit for every key when `found_is_hit` (an intersection).
    Several {
        empty_is_miss: bool,
        found_is_hit: bool,
    },
}

/// Key lookups of one command, as Redis counts them; `unknown` are lookups
/// the reply does not decide.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lookups {
    pub hits: u64,
    pub misses: u64,
    pub unknown: u64,
}

impl Lookups {
    pub fn total(&self) -> u64 {
        self.hits + self.misses + self.unknown
    }

    fn one(found: Option<bool>) -> Lookups {
        Lookups::of(1, found)
    }

    /// `keys` lookups that all found (`Some(true)`), all missed, or are
    /// unknown.
    fn of(keys: u64, found: Option<bool>) -> Lookups {
        match found {
            Some(true) => Lookups {
                hits: keys,
                ..Default::default()
            },
            Some(false) => Lookups {
                misses: keys,
                ..Default::default()
            },
            None => Lookups {
                unknown: keys,
                ..Default::default()
            },
        }
    }
}

/// Whether an answer holds something: a value, a non-zero count, a
/// non-empty aggregate with something in it.
fn holds(value: &Value) -> bool {
    match value {
        Value::Nil | Value::Error(_) => false,
        Value::Integer(n) => *n != 0,
        Value::Bulk(b) | Value::Simple(b) => !b.is_empty(),
        Value::Array(items) | Value::Push(items) => items.iter().any(holds),
    }
}

fn empty(value: &Value) -> bool {
    match value {
        Value::Nil => true,
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// The key lookups of `command`, from its reply.
pub fn key_lookups(command: &Command, reply: &Value) -> Lookups {
    let Some(rule) = command.lookup else {
        return Lookups::default();
    };
    let keys = command.keys as u64;
    if let Value::Error(message) = reply {
        // The key is there, of another type. Other errors come before the
        // lookup (arity, syntax, permissions). A multi-key command stops at
        // the key of the wrong type: how many it looked up before is not
        // known, only that one was found.
        return if crate::resp::error_code(message) == "WRONGTYPE" {
            Lookups::one(Some(true))
        } else {
            Lookups::default()
        };
    }
    match (rule, reply) {
        (Lookup::Nil, _) => Lookups::one(Some(!matches!(reply, Value::Nil))),
        (Lookup::Empty, _) => Lookups::one(Some(!empty(reply))),
        (Lookup::Zero, Value::Integer(n)) => Lookups::one(Some(*n != 0)),
        (Lookup::Ttl, Value::Integer(n)) => Lookups::one(Some(*n != -2)),
        (Lookup::Type, Value::Simple(t) | Value::Bulk(t)) => Lookups::one(Some(t != b"none")),
        (Lookup::Counted, Value::Integer(found)) => {
            let found = (*found).clamp(0, keys as i64) as u64;
            Lookups {
                hits: found,
                misses: keys - found,
                unknown: 0,
            }
        }
        (Lookup::PerKey, Value::Array(items)) => {
            let misses = items.iter().filter(|v| matches!(v, Value::Nil)).count() as u64;
            Lookups {
                hits: items.len() as u64 - misses,
                misses,
                unknown: 0,
            }
        }
        (Lookup::Found, _) => Lookups::one(holds(reply).then_some(true)),
        (Lookup::Position, _) => Lookups::one((!empty(reply)).then_some(true)),
        (Lookup::Window { nothing_is_miss }, _) => Lookups::one(if holds(reply) {
            Some(true)
        } else {
            nothing_is_miss.then_some(false)
        }),
        (
            Lookup::Several {
                empty_is_miss,
                found_is_hit,
            },
            _,
        ) => {
            let found = holds(reply);
            let decided = if found && found_is_hit {
                Some(true)
            } else if !found && empty_is_miss {
                Some(false)
            } else {
                None
            };
            Lookups::of(keys, decided)
        }
        _ => Lookups::default(),
    }
}

/// Why Redis refused a command without running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A command or subcommand it does not know: counted nowhere in `INFO
    /// commandstats` (only in `errorstat_ERR`).
    Unknown,
    /// Known, refused before it ran (wrong arity, no permission, out of
    /// memory, read-only replica…): counted in its `rejected_calls`, not in
    /// its `calls`. With the reason it is reported under.
    Refused(&'static str),
}

impl Rejection {
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::Unknown => "unknown",
            Rejection::Refused(reason) => reason,
        }
    }
}

/// Commands whose own code answers "wrong number of arguments" for counts
/// their declared arity allows (Redis 7.0: `HSET` with a field but no
/// value, `MSET` with a key but no value, `XADD`, `LPOP` with too many
/// arguments…): with that many words the error is a failed call, not a
/// refusal. Each with its declared arity (negative: at least that many).
const ARITY_CHECKED_WHEN_RUN: [(&str, i64); 9] = [
    ("hset", -4),
    ("lpop", -2),
    ("rpop", -2),
    ("xadd", -5),
    ("mset", -3),
    ("msetnx", -3),
    ("cluster|addslotsrange", -4),
    ("cluster|delslotsrange", -4),
    ("acl|dryrun", -4),
];

/// Error codes Redis answers only when it refuses a command before running
/// it (`processCommand` in Redis' `server.c`), with the reason reported.
const REFUSAL_CODES: [(&str, &str); 14] = [
    ("NOAUTH", "noauth"),
    ("NOPERM", "noperm"),
    ("OOM", "oom"),
    ("MISCONF", "misconf"),
    ("NOREPLICAS", "noreplicas"),
    ("READONLY", "readonly"),
    ("MASTERDOWN", "masterdown"),
    ("LOADING", "loading"),
    ("BUSY", "busy"),
    ("MOVED", "moved"),
    ("ASK", "ask"),
    ("CLUSTERDOWN", "clusterdown"),
    ("CROSSSLOT", "crossslot"),
    ("TRYAGAIN", "tryagain"),
];

/// `ERR` refusals of `processCommand`, by the start of their message.
const REFUSAL_MESSAGES: [&str; 5] = [
    "ERR Command not allowed inside a transaction",
    "ERR Can't execute '",
    "ERR Replica can't interact with the keyspace",
    "ERR DEBUG command not allowed",
    "ERR MODULE command not allowed",
];

/// Whether Redis refused `command` (answered with `message`) before running
/// it, and so how `INFO commandstats` counts it.
pub fn rejection(command: &Command, message: &str) -> Option<Rejection> {
    if message.starts_with("ERR unknown command") || message.starts_with("ERR unknown subcommand '")
    {
        return Some(Rejection::Unknown);
    }
    // Errors of a script's own commands are the script's failure.
    if message.contains(" script: ") {
        return None;
    }
    if message.starts_with("ERR wrong number of arguments for '") {
        let runs_anyway = ARITY_CHECKED_WHEN_RUN
            .iter()
            .find(|(name, _)| *name == command.name)
            .is_some_and(|(_, arity)| {
                let argc = command.argc as i64;
                if *arity < 0 {
                    argc >= -arity
                } else {
                    argc == *arity
                }
            });
        return (!runs_anyway).then_some(Rejection::Refused("arity"));
    }
    let code = crate::resp::error_code(message);
    if let Some((_, reason)) = REFUSAL_CODES.iter().find(|(c, _)| *c == code) {
        return Some(Rejection::Refused(reason));
    }
    REFUSAL_MESSAGES
        .iter()
        .any(|start| message.starts_with(start))
        .then_some(Rejection::Refused("not_allowed"))
}

/// The lookup rule of `name`, with `rest` its arguments after the name (and
/// subcommand), and how many keys it looks up.
fn lookup_rule<W: AsRef<[u8]>>(name: &str, rest: &[W]) -> Option<(Lookup, usize)> {
    let int = |i: usize| -> Option<i64> {
        std::str::from_utf8(rest.get(i)?.as_ref())
            .ok()?
            .parse()
            .ok()
    };
    let is = |i: usize, word: &str| {
        rest.get(i)
            .is_some_and(|w| w.as_ref().eq_ignore_ascii_case(word.as_bytes()))
    };
    let has = |word: &str| {
        rest.iter()
            .skip(1)
            .any(|w| w.as_ref().eq_ignore_ascii_case(word.as_bytes()))
    };
    // A window any existing key fills: from the first element to the last,
    // or to a non-negative index.
    let whole = |start: Option<i64>, stop: Option<i64>| match (start, stop) {
        (Some(start), Some(stop)) => (start <= 0 && stop == -1) || (start == 0 && stop >= 0),
        _ => false,
    };
    let several = |keys: usize, empty_is_miss, found_is_hit| {
        Some((
            Lookup::Several {
                empty_is_miss,
                found_is_hit,
            },
            keys,
        ))
    };
    let numkeys = |i: usize| int(i).and_then(|n| usize::try_from(n).ok());
    let rule = match name {
        "get" | "getdel" | "getex" | "getset" | "dump" | "object|encoding" | "object|freq"
        | "object|idletime" | "object|refcount" => Lookup::Nil,
        "set"
            if rest
                .iter()
                .skip(2)
                .any(|w| w.as_ref().eq_ignore_ascii_case(b"GET")) =>
        {
            Lookup::Nil
        }
        "hrandfield" | "srandmember" | "zrandmember" => match rest.len() {
            1 => Lookup::Nil,
            _ if int(1) == Some(0) => Lookup::Found,
            _ => Lookup::Empty,
        },
        "hgetall" | "hkeys" | "hvals" | "smembers" => Lookup::Empty,
        "sinter" if rest.len() == 1 => Lookup::Empty,
        "llen" | "scard" | "zcard" | "hlen" | "strlen" => Lookup::Zero,
        "ttl" | "pttl" | "expiretime" | "pexpiretime" => Lookup::Ttl,
        "type" => Lookup::Type,
        "exists" | "touch" => return Some((Lookup::Counted, rest.len())),
        "mget" => return Some((Lookup::PerKey, rest.len())),
        "hget" | "hmget" | "hexists" | "hstrlen" | "sismember" | "smismember" | "zscore"
        | "zmscore" | "getbit" | "zcount" | "zlexcount" | "geodist" | "geohash" | "geopos"
        | "bitcount" | "xlen" => Lookup::Found,
        "pfcount" if rest.len() == 1 => Lookup::Found,
        "zrank" | "zrevrank" | "lpos" => Lookup::Position,
        "lrange" | "zrevrange" | "getrange" | "substr" => Lookup::Window {
            nothing_is_miss: whole(int(1), int(2)),
        },
        "lindex" => Lookup::Window {
            nothing_is_miss: matches!(int(1), Some(0 | -1)),
        },
        "zrange" | "zrangestore" => {
            let at = usize::from(name == "zrangestore");
            let (min, max) = (at + 1, at + 2);
            let rev = has("REV");
            let nothing_is_miss = if has("LIMIT") {
                false
            } else if has("BYSCORE") {
                let (low, high) = if rev {
                    ("+inf", "-inf")
                } else {
                    ("-inf", "+inf")
                };
                is(min, low) && is(max, high)
            } else if has("BYLEX") {
                let (low, high) = if rev { ("+", "-") } else { ("-", "+") };
                is(min, low) && is(max, high)
            } else {
                whole(int(min), int(max))
            };
            Lookup::Window { nothing_is_miss }
        }
        "zrangebyscore" | "zrevrangebyscore" | "zrangebylex" | "zrevrangebylex" => {
            let (low, high) = match name {
                "zrangebyscore" => ("-inf", "+inf"),
                "zrevrangebyscore" => ("+inf", "-inf"),
                "zrangebylex" => ("-", "+"),
                _ => ("+", "-"),
            };
            Lookup::Window {
                nothing_is_miss: !has("LIMIT") && is(1, low) && is(2, high),
            }
        }
        "sinter" => return several(rest.len(), false, true),
        "sunion" => return several(rest.len(), true, false),
        "sdiff" => return several(rest.len(), false, false),
        "sinterstore" => return several(rest.len().saturating_sub(1), false, true),
        "sunionstore" => return several(rest.len().saturating_sub(1), true, false),
        "sdiffstore" => return several(rest.len().saturating_sub(1), false, false),
        "sintercard" | "zintercard" | "zinter" => return several(numkeys(0)?, false, true),
        "zunion" => return several(numkeys(0)?, true, false),
        "zdiff" => return several(numkeys(0)?, false, false),
        "zinterstore" => return several(numkeys(1)?, false, true),
        "zunionstore" => return several(numkeys(1)?, true, false),
        "zdiffstore" => return several(numkeys(1)?, false, false),
        "bitop" => return several(rest.len().saturating_sub(2), false, false),
        // Several HyperLogLogs; PFMERGE looks its destination up as a source.
        "pfcount" | "pfmerge" => return several(rest.len(), false, false),
        "lcs" => return several(2, false, true),
        _ => return None,
    };
    Some((rule, 1))
}

impl Command {
    /// The command of a request array; `None` when it is not one.
    pub fn from_request(request: Value) -> Option<Command> {
        let Value::Array(words) = request else {
            return None;
        };
        let words: Vec<Vec<u8>> = words
            .into_iter()
            .filter_map(|word| match word {
                Value::Bulk(bytes) | Value::Simple(bytes) => Some(bytes),
                _ => None,
            })
            .collect();
        Command::from_words(&words)
    }

    /// The command of a request's words (bulk strings, the name first);
    /// `None` when they are not one. Only the name, the first key and
    /// channels are copied, each cut to [`crate::resp::KEEP`] bytes.
    pub fn from_words<W: AsRef<[u8]>>(words: &[W]) -> Option<Command> {
        let first = words.first()?.as_ref();
        if first.is_empty() || first.len() > 32 || !first.iter().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        let argc = words.len();
        let mut name = String::with_capacity(first.len());
        // ASCII, checked above.
        name.extend(first.iter().map(|b| char::from(b.to_ascii_lowercase())));
        let mut rest = &words[1..];
        if CONTAINERS.contains(&name.as_str())
            && let Some(sub) = rest.first().map(AsRef::as_ref)
            && !sub.is_empty()
            && sub.len() <= 32
        {
            name.push('|');
            name.push_str(&String::from_utf8_lossy(sub).to_ascii_lowercase());
            rest = &rest[1..];
        }
        let (lookup, keys) = match lookup_rule(&name, rest) {
            Some((rule, keys)) => (Some(rule), keys),
            None => (None, 0),
        };
        let kept = |word: &W| {
            let word = word.as_ref();
            word[..word.len().min(crate::resp::KEEP)].to_vec()
        };
        // Only channels are kept: other arguments (values, and the
        // credentials of AUTH, HELLO, ACL SETUSER, CONFIG SET, MIGRATE) are
        // never kept.
        let args = match name.as_str() {
            // The channel, not the message.
            "publish" | "spublish" => rest.iter().take(1).map(kept).collect(),
            name if PUB_SUB.contains(&name) => rest.iter().map(kept).collect(),
            _ => Vec::new(),
        };
        let keyed = !KEYLESS.contains(&name.as_str()) && !name.contains('|');
        let key = if keyed { rest.first().map(kept) } else { None };
        Some(Command {
            name,
            key,
            argc,
            lookup,
            keys,
            args,
        })
    }

    /// `db.query.text`: the command and its key, never values.
    pub fn query_text(&self) -> String {
        match &self.key {
            Some(key) => format!(
                "{} {}",
                self.name.to_uppercase(),
                String::from_utf8_lossy(key)
            ),
            None => self.name.to_uppercase(),
        }
    }

    /// Channels named by a (un)subscribe or publish.
    pub fn channels(&self) -> &[Vec<u8>] {
        &self.args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(words: &[&str]) -> Command {
        let array = Value::Array(
            words
                .iter()
                .map(|w| Value::Bulk(w.as_bytes().to_vec()))
                .collect(),
        );
        Command::from_request(array).unwrap()
    }

    #[test]
    fn words_read_in_place_keep_only_a_cut_key_and_channels() {
        let key = vec![b'k'; 1000];
        let get = Command::from_words(&[&b"GeT"[..], &key]).unwrap();
        assert_eq!((get.name.as_str(), get.argc), ("get", 2));
        assert_eq!(get.key.as_deref(), Some(&key[..crate::resp::KEEP]));
        let publish = Command::from_words(&[&b"PUBLISH"[..], b"ch", b"secret"]).unwrap();
        assert_eq!(publish.channels(), [b"ch".to_vec()]);
        let auth = Command::from_words(&[&b"AUTH"[..], b"user", b"password"]).unwrap();
        assert!(auth.key.is_none() && auth.args.is_empty(), "{auth:?}");
        assert!(Command::from_words(&[&b"G\x00T"[..]]).is_none());
    }

    #[test]
    fn names_keys_and_subcommands() {
        let get = command(&["GET", "item:1"]);
        assert_eq!(
            (get.name.as_str(), get.key.as_deref()),
            ("get", Some(&b"item:1"[..]))
        );
        assert_eq!(get.query_text(), "GET item:1");
        assert_eq!(command(&["config", "GET", "maxmemory"]).name, "config|get");
        assert_eq!(command(&["PING"]).key, None);
        assert_eq!(command(&["MGET", "a", "b", "c"]).keys, 3);
        assert_eq!(
            command(&["HMGET", "h", "a", "b"]).keys,
            1,
            "one key, two fields"
        );
        assert_eq!(command(&["CLIENT", "SETINFO", "lib-name", "x"]).argc, 4);
        assert!(Command::from_request(Value::Integer(1)).is_none());
    }

    #[test]
    fn credentials_are_never_kept() {
        for words in [
            &["AUTH", "user", "s3cret"][..],
            &["HELLO", "3", "AUTH", "u", "s3cret"],
        ] {
            let c = command(words);
            assert!(c.args.is_empty() && c.key.is_none(), "{c:?}");
            assert!(!c.query_text().contains("s3cret"));
        }
    }

    fn lookups(words: &[&str], reply: &Value) -> (u64, u64, u64) {
        let l = key_lookups(&command(words), reply);
        (l.hits, l.misses, l.unknown)
    }

    #[test]
    fn key_lookups_as_redis_counts_them() {
        let bulk = || Value::Bulk(b"v".to_vec());
        let array = |items: Vec<Value>| Value::Array(items);
        assert_eq!(lookups(&["GET", "k"], &bulk()), (1, 0, 0));
        assert_eq!(lookups(&["GET", "k"], &Value::Nil), (0, 1, 0));
        assert_eq!(
            lookups(&["GET", "k"], &Value::Bulk(Vec::new())),
            (1, 0, 0),
            "an empty string is there"
        );
        let wrongtype = Value::Error("WRONGTYPE Operation against a key".into());
        assert_eq!(lookups(&["GET", "k"], &wrongtype), (1, 0, 0));
        assert_eq!(
            lookups(&["GET", "k"], &Value::Error("ERR syntax error".into())),
            (0, 0, 0)
        );
        assert_eq!(
            lookups(
                &["MGET", "a", "b", "c"],
                &array(vec![bulk(), Value::Nil, bulk()])
            ),
            (2, 1, 0)
        );
        assert_eq!(
            lookups(&["EXISTS", "a", "a", "b"], &Value::Integer(2)),
            (2, 1, 0)
        );
        assert_eq!(lookups(&["TTL", "k"], &Value::Integer(-2)), (0, 1, 0));
        assert_eq!(lookups(&["TTL", "k"], &Value::Integer(-1)), (1, 0, 0));
        assert_eq!(
            lookups(&["TYPE", "k"], &Value::Simple(b"none".to_vec())),
            (0, 1, 0)
        );
        assert_eq!(lookups(&["HGETALL", "h"], &array(vec![])), (0, 1, 0));
        // A missing field of an existing hash, or a missing hash: unknown.
        assert_eq!(lookups(&["HGET", "h", "f"], &Value::Nil), (0, 0, 1));
        assert_eq!(lookups(&["HGET", "h", "f"], &bulk()), (1, 0, 0));
        assert_eq!(
            lookups(&["HMGET", "h", "a", "b"], &array(vec![Value::Nil, bulk()])),
            (1, 0, 0)
        );
        assert_eq!(
            lookups(&["ZRANK", "z", "m"], &Value::Integer(0)),
            (1, 0, 0),
            "first is 0"
        );
        // Windows an existing key always fills, and others.
        assert_eq!(
            lookups(&["LRANGE", "l", "0", "-1"], &array(vec![])),
            (0, 1, 0)
        );
        assert_eq!(
            lookups(&["LRANGE", "l", "-1", "5"], &array(vec![])),
            (0, 0, 1)
        );
        assert_eq!(
            lookups(&["LRANGE", "l", "5", "10"], &array(vec![bulk()])),
            (1, 0, 0)
        );
        assert_eq!(lookups(&["LINDEX", "l", "0"], &Value::Nil), (0, 1, 0));
        assert_eq!(lookups(&["LINDEX", "l", "3"], &Value::Nil), (0, 0, 1));
        assert_eq!(
            lookups(&["ZRANGE", "z", "-inf", "+inf", "BYSCORE"], &array(vec![])),
            (0, 1, 0)
        );
        assert_eq!(
            lookups(
                &["ZRANGE", "z", "-inf", "+inf", "BYSCORE", "LIMIT", "0", "1"],
                &array(vec![])
            ),
            (0, 0, 1)
        );
        assert_eq!(
            lookups(&["GETRANGE", "s", "0", "-1"], &Value::Bulk(Vec::new())),
            (0, 1, 0)
        );
        assert_eq!(
            lookups(&["SRANDMEMBER", "s", "0"], &array(vec![])),
            (0, 0, 1)
        );
        assert_eq!(
            lookups(&["SRANDMEMBER", "s", "3"], &array(vec![])),
            (0, 1, 0)
        );
        // Several keys: a union that is empty missed them all, an
        // intersection that is not found them all.
        assert_eq!(lookups(&["SUNION", "a", "b"], &array(vec![])), (0, 2, 0));
        assert_eq!(
            lookups(&["SINTER", "a", "b", "c"], &array(vec![bulk()])),
            (3, 0, 0)
        );
        assert_eq!(lookups(&["SINTER", "a", "b"], &array(vec![])), (0, 0, 2));
        assert_eq!(
            lookups(&["ZUNIONSTORE", "d", "2", "a", "b"], &Value::Integer(0)),
            (0, 2, 0)
        );
        // Writes that read, and writes that do not.
        assert_eq!(lookups(&["SET", "k", "v", "GET"], &Value::Nil), (0, 1, 0));
        assert_eq!(lookups(&["GETDEL", "k"], &bulk()), (1, 0, 0));
        assert_eq!(
            lookups(&["SET", "k", "v"], &Value::Simple(b"OK".to_vec())),
            (0, 0, 0)
        );
        assert_eq!(lookups(&["INCR", "k"], &Value::Integer(1)), (0, 0, 0));
    }

    #[test]
    fn refusals_as_redis_counts_them() {
        let refused = |words: &[&str], message: &str| rejection(&command(words), message);
        assert_eq!(
            refused(
                &["CLIENT", "SETINFO", "lib-name", "x"],
                "ERR unknown subcommand 'SETINFO'. Try CLIENT HELP."
            ),
            Some(Rejection::Unknown)
        );
        assert_eq!(
            refused(
                &["FOO"],
                "ERR unknown command 'FOO', with args beginning with: "
            ),
            Some(Rejection::Unknown)
        );
        assert_eq!(
            refused(&["GET"], "ERR wrong number of arguments for 'get' command"),
            Some(Rejection::Refused("arity"))
        );
        // HSET checks its pairs itself: with enough words it ran and failed.
        assert_eq!(
            refused(
                &["HSET", "h", "f", "v", "g"],
                "ERR wrong number of arguments for 'hset' command"
            ),
            None
        );
        assert_eq!(
            refused(
                &["HSET", "h", "f"],
                "ERR wrong number of arguments for 'hset' command"
            ),
            Some(Rejection::Refused("arity"))
        );
        assert_eq!(
            refused(
                &["SET", "k", "v"],
                "NOPERM this user has no permissions to run the 'set' command"
            ),
            Some(Rejection::Refused("noperm"))
        );
        assert_eq!(
            refused(
                &["CONFIG", "GET", "x", "y", "z"],
                "ERR unknown subcommand or wrong number of arguments for 'GET'. Try CONFIG HELP."
            ),
            None,
            "answered by the command itself"
        );
        assert_eq!(
            refused(
                &["INCR", "s"],
                "ERR value is not an integer or out of range"
            ),
            None
        );
        assert_eq!(
            refused(
                &["EXEC"],
                "EXECABORT Transaction discarded because of previous errors."
            ),
            None
        );
        assert_eq!(
            refused(
                &["EVAL", "s", "0"],
                "NOPERM this user has no permissions to run the 'set' command script: abc, on @user_script:1."
            ),
            None
        );
    }
}
