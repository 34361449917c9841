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
    /// Keys looked up, for reads that answer per key (`MGET`, `EXISTS`).
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
pub enum Read {
    /// One key: nil (or an empty aggregate) is a miss.
    Single,
    /// One answer per key, in an array: each nil is a miss.
    PerKey,
    /// `EXISTS`: the count of keys found.
    Counted,
    /// A size: 0 is a miss (Redis never keeps an empty list, set or hash).
    Size,
    /// `TTL` and friends: -2 is a miss.
    Ttl,
    /// `TYPE`: `none` is a miss.
    Type,
}

/// Reads whose answer says whether the key was there.
pub fn read_kind(name: &str) -> Option<Read> {
    match name {
        "get" | "getex" | "getdel" | "hget" | "hgetall" | "lrange" | "smembers" | "zrange"
        | "lindex" | "zscore" | "hkeys" | "hvals" | "getrange" | "substr" => Some(Read::Single),
        "mget" | "hmget" => Some(Read::PerKey),
        "exists" => Some(Read::Counted),
        "llen" | "scard" | "zcard" | "hlen" => Some(Read::Size),
        "ttl" | "pttl" | "expiretime" | "pexpiretime" => Some(Read::Ttl),
        "type" => Some(Read::Type),
        _ => None,
    }
}

/// Whether a read's hits and misses are exactly Redis' key lookups (what
/// `keyspace_hits` and `keyspace_misses` count): its answer tells whether
/// the key exists, not only whether a field or a range was there. `HGET`,
/// `HMGET` (one lookup per key, not per field), `LINDEX`, `ZSCORE`,
/// `LRANGE`, `ZRANGE` and `GETRANGE` can answer nil or empty for a key that
/// exists: they have a hit or miss status, but no key lookups.
pub fn counts_key_lookups(name: &str) -> bool {
    !matches!(
        name,
        "hget" | "hmget" | "lindex" | "zscore" | "lrange" | "zrange" | "getrange" | "substr"
    ) && read_kind(name).is_some()
}

/// Hits and misses of a read, from its reply; `None` when the reply says
/// nothing about the key (other errors, unexpected shapes).
pub fn lookups(name: &str, keys: usize, reply: &Value) -> Option<(u64, u64)> {
    let kind = read_kind(name)?;
    let empty = |v: &Value| match v {
        Value::Nil => true,
        Value::Array(items) => items.is_empty(),
        _ => false,
    };
    let found = |yes: bool| Some(if yes { (1, 0) } else { (0, 1) });
    match (kind, reply) {
        // The key is there, of another type: Redis counts a hit.
        (Read::Single | Read::Size, Value::Error(code)) if code == "WRONGTYPE" => Some((1, 0)),
        (_, Value::Error(_)) => None,
        (Read::Single, v) => found(!empty(v)),
        (Read::PerKey, Value::Array(items)) => {
            let misses = items.iter().filter(|v| matches!(v, Value::Nil)).count() as u64;
            Some((items.len() as u64 - misses, misses))
        }
        (Read::Counted, Value::Integer(found)) => {
            let found = (*found).clamp(0, keys as i64) as u64;
            Some((found, keys as u64 - found))
        }
        (Read::Size, Value::Integer(n)) => found(*n != 0),
        (Read::Ttl, Value::Integer(n)) => found(*n != -2),
        (Read::Type, Value::Simple(t)) => found(t != b"none"),
        _ => None,
    }
}

impl Command {
    /// The command of a request array; `None` when it is not one.
    pub fn parse(request: &Value) -> Option<Command> {
        let Value::Array(words) = request else {
            return None;
        };
        let mut words = words.iter().filter_map(Value::as_bytes);
        let first = words.next()?;
        if first.is_empty() || first.len() > 32 || !first.iter().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        let mut name = String::from_utf8_lossy(first).to_ascii_lowercase();
        let args: Vec<&[u8]> = words.collect();
        let mut rest = &args[..];
        if CONTAINERS.contains(&name.as_str())
            && let Some(sub) = rest.first()
            && !sub.is_empty()
            && sub.len() <= 32
        {
            name = format!(
                "{name}|{}",
                String::from_utf8_lossy(sub).to_ascii_lowercase()
            );
            rest = &rest[1..];
        }
        let keyed = !KEYLESS.contains(&name.as_str()) && !name.contains('|');
        let key = keyed
            .then(|| rest.first().map(|key| key.to_vec()))
            .flatten();
        let keys = match read_kind(&name) {
            Some(Read::PerKey) if name == "mget" => rest.len(),
            Some(Read::PerKey) => rest.len().saturating_sub(1),
            Some(Read::Counted) => rest.len(),
            Some(Read::Single | Read::Size | Read::Ttl | Read::Type) => 1,
            None => 0,
        };
        // Only channels are kept: other arguments (values, and the
        // credentials of AUTH, HELLO, ACL SETUSER, CONFIG SET, MIGRATE) are
        // never copied.
        let args = match name.as_str() {
            // The channel, not the message.
            "publish" | "spublish" => rest.iter().take(1).map(|arg| arg.to_vec()).collect(),
            name if PUB_SUB.contains(&name) => rest.iter().map(|arg| arg.to_vec()).collect(),
            _ => Vec::new(),
        };
        Some(Command {
            name,
            key,
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
        Command::parse(&array).unwrap()
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
        assert_eq!(command(&["HMGET", "h", "a", "b"]).keys, 2);
        assert!(Command::parse(&Value::Integer(1)).is_none());
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

    #[test]
    fn hits_and_misses_from_replies() {
        let bulk = Value::Bulk(b"v".to_vec());
        assert_eq!(lookups("get", 1, &bulk), Some((1, 0)));
        assert_eq!(lookups("get", 1, &Value::Nil), Some((0, 1)));
        let mget = Value::Array(vec![bulk.clone(), Value::Nil, bulk.clone()]);
        assert_eq!(lookups("mget", 3, &mget), Some((2, 1)));
        assert_eq!(lookups("exists", 3, &Value::Integer(2)), Some((2, 1)));
        assert_eq!(lookups("lrange", 1, &Value::Array(vec![])), Some((0, 1)));
        assert_eq!(
            lookups("get", 1, &Value::Error("WRONGTYPE".into())),
            Some((1, 0))
        );
        assert_eq!(lookups("get", 1, &Value::Error("ERR".into())), None);
        assert_eq!(lookups("ttl", 1, &Value::Integer(-2)), Some((0, 1)));
        assert_eq!(lookups("ttl", 1, &Value::Integer(-1)), Some((1, 0)));
        assert_eq!(
            lookups("type", 1, &Value::Simple(b"none".to_vec())),
            Some((0, 1))
        );
        assert_eq!(lookups("llen", 1, &Value::Integer(0)), Some((0, 1)));
        assert!(counts_key_lookups("get") && counts_key_lookups("mget"));
        assert!(!counts_key_lookups("hget") && !counts_key_lookups("set"));
        assert_eq!(lookups("set", 1, &Value::Simple(b"OK".to_vec())), None);
    }
}
