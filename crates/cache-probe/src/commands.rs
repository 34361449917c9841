//! What the probe knows about Redis commands: how `INFO commandstats` names
//! them, where their key is, which are reads (a nil or empty answer is a
//! miss), which look keys up as Redis counts them, and which carry secrets.
//!
//! A command's name is worked out once per distinct name: [`Name`] is an
//! interned handle to what is known of it, so that a command seen a
//! million times is classified once, not a million times.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::fnv::FastHash;
use crate::resp::Value;

/// A command as sent, reduced to what the probe records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// As `INFO commandstats` names it: lower case, with the subcommand of
    /// container commands (`config|get`, `client|setname`).
    pub name: Name,
    /// The first key, if the command has one and keys are kept (cut to
    /// [`crate::resp::KEEP`]): spans show it, metrics never do.
    pub key: Option<Box<[u8]>>,
    /// Words sent, the name (and subcommand) included.
    pub argc: u32,
    /// How its reply tells its key lookups, if it makes any Redis counts.
    pub lookup: Option<Lookup>,
    /// Keys it looks up (one for most; `MGET`, `EXISTS`, `SINTER`… more).
    pub keys: u32,
    /// The channels of pub/sub commands; empty for every other command.
    pub args: Box<[Box<[u8]>]>,
}

/// What a command does to its connection's state, beyond its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Plain,
    Multi,
    Exec,
    Discard,
    /// `SUBSCRIBE`, `PSUBSCRIBE`, `SSUBSCRIBE`.
    Subscribe(Subscription),
    /// `UNSUBSCRIBE`, `PUNSUBSCRIBE`, `SUNSUBSCRIBE`.
    Unsubscribe(Subscription),
    /// `PUBLISH`, `SPUBLISH`: its first argument is a channel.
    Publish,
}

/// The three kinds of pub/sub subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    Channel = 0,
    Pattern = 1,
    Shard = 2,
}

/// A command name and what is known of it; cheap to copy and compare.
#[derive(Clone, Copy)]
pub struct Name(&'static Spec);

struct Spec {
    text: &'static str,
    role: Role,
    /// Its first argument is a subcommand, part of the name in `INFO
    /// commandstats` (`config` → `config|get`).
    container: bool,
    /// Its first argument is a key.
    keyed: bool,
    family: Option<Family>,
    read: Option<Read>,
}

impl Name {
    pub fn as_str(&self) -> &'static str {
        self.0.text
    }

    pub fn role(&self) -> Role {
        self.0.role
    }

    /// An identity for this name on this thread (names are interned per
    /// thread): equal names have equal ids on one thread.
    pub fn id(&self) -> usize {
        std::ptr::from_ref(self.0) as usize
    }

    /// The name of `word` (and of `sub`, for a container command), any
    /// case; `None` when `word` cannot be a command name.
    fn of(word: &[u8]) -> Option<Name> {
        if word.is_empty() || word.len() > MAX_NAME || !word.iter().all(u8::is_ascii_graphic) {
            return None;
        }
        let mut lower = [0u8; 2 * MAX_NAME + 1];
        for (slot, b) in lower.iter_mut().zip(word) {
            *slot = b.to_ascii_lowercase();
        }
        Some(intern(&lower[..word.len()]))
    }

    /// `container|sub`.
    fn with_sub(self, sub: &[u8]) -> Option<Name> {
        if sub.is_empty() || sub.len() > MAX_NAME {
            return None;
        }
        let text = self.0.text.as_bytes();
        let mut full = [0u8; 2 * MAX_NAME + 1];
        full[..text.len()].copy_from_slice(text);
        full[text.len()] = b'|';
        for (slot, b) in full[text.len() + 1..].iter_mut().zip(sub) {
            *slot = b.to_ascii_lowercase();
        }
        Some(intern(&full[..text.len() + 1 + sub.len()]))
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        std::ptr::eq(self.0, other.0) || self.0.text == other.0.text
    }
}

impl Eq for Name {}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.0.text == *other
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.text.fmt(f)
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.text)
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.0.text
    }
}

/// The last few names a connection sent, by their bytes as sent: most
/// connections send a handful of commands, found here by a comparison or
/// two instead of a look into the interner.
#[derive(Debug, Default)]
pub struct RecentNames {
    entries: [Option<(RecentKey, Name)>; RECENT],
    next: usize,
}

/// Names remembered per connection.
const RECENT: usize = 4;

/// A name's bytes as sent, up to 16 of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecentKey {
    len: u8,
    bytes: [u8; 16],
}

impl RecentKey {
    fn of(word: &[u8]) -> Option<RecentKey> {
        let mut bytes = [0; 16];
        bytes.get_mut(..word.len())?.copy_from_slice(word);
        Some(RecentKey {
            len: word.len() as u8,
            bytes,
        })
    }

    /// Whether `word` is this key's bytes: compared without a call (names
    /// are a few bytes long, where a `memcmp` costs more than the bytes).
    fn is(&self, word: &[u8]) -> bool {
        usize::from(self.len) == word.len()
            && self
                .bytes
                .iter()
                .zip(word)
                .fold(0, |differ, (a, b)| differ | (a ^ b))
                == 0
    }
}

impl RecentNames {
    /// The name of `word`, as [`Name::of`].
    fn name(&mut self, word: &[u8]) -> Option<Name> {
        if let Some((_, name)) = self.entries.iter().flatten().find(|(key, _)| key.is(word)) {
            return Some(*name);
        }
        let name = Name::of(word)?;
        if let Some(key) = RecentKey::of(word) {
            self.entries[self.next] = Some((key, name));
            self.next = (self.next + 1) % RECENT;
        }
        Some(name)
    }
}

/// Longest command or subcommand name taken for one.
const MAX_NAME: usize = 32;

/// Distinct names interned (per thread); beyond, a name Redis does not
/// have is reported as [`OTHER`]. Redis' own commands are interned first,
/// so that garbage taken for commands can never push a real one out.
const MAX_NAMES: usize = 4096;

const OTHER: &str = "other";

/// Redis 7.0's commands and subcommands (`COMMAND LIST`); later ones are
/// interned as they come.
const KNOWN: &str = "acl append asking auth bgrewriteaof bgsave bitcount bitfield bitfield_ro bitop bitpos \
blmove blmpop blpop brpop brpoplpush bzmpop bzpopmax bzpopmin client cluster command config copy dbsize \
debug decr decrby del discard dump echo eval eval_ro evalsha evalsha_ro exec exists expire expireat \
expiretime failover fcall fcall_ro flushall flushdb function geoadd geodist geohash geopos georadius \
georadius_ro georadiusbymember georadiusbymember_ro geosearch geosearchstore get getbit getdel getex \
getrange getset hdel hello hexists hget hgetall hincrby hincrbyfloat hkeys hlen hmget hmset hrandfield \
hscan hset hsetnx hstrlen hvals incr incrby incrbyfloat info keys lastsave latency lcs lindex linsert \
llen lmove lmpop lolwut lpop lpos lpush lpushx lrange lrem lset ltrim memory mget migrate module monitor \
move mset msetnx multi object persist pexpire pexpireat pexpiretime pfadd pfcount pfdebug pfmerge \
pfselftest ping psetex psubscribe psync pttl publish pubsub punsubscribe quit randomkey readonly \
readwrite rename renamenx replconf replicaof reset restore restore-asking role rpop rpoplpush rpush \
rpushx sadd save scan scard script sdiff sdiffstore select set setbit setex setnx setrange shutdown \
sinter sintercard sinterstore sismember slaveof slowlog smembers smismember smove sort sort_ro spop \
spublish srandmember srem sscan ssubscribe strlen subscribe substr sunion sunionstore sunsubscribe \
swapdb sync time touch ttl type unlink unsubscribe unwatch wait watch xack xadd xautoclaim xclaim xdel \
xgroup xinfo xlen xpending xrange xread xreadgroup xrevrange xsetid xtrim zadd zcard zcount zdiff \
zdiffstore zincrby zinter zintercard zinterstore zlexcount zmpop zmscore zpopmax zpopmin zrandmember \
zrange zrangebylex zrangebyscore zrangestore zrank zrem zremrangebylex zremrangebyrank \
zremrangebyscore zrevrange zrevrangebylex zrevrangebyscore zrevrank zscan zscore zunion zunionstore \
acl|cat acl|deluser acl|dryrun acl|genpass acl|getuser acl|list acl|load acl|log acl|save acl|setuser \
acl|users acl|whoami client|caching client|getname client|getredir client|id client|info client|kill \
client|list client|no-evict client|pause client|reply client|setname client|tracking \
client|trackinginfo client|unblock client|unpause cluster|addslots cluster|addslotsrange \
cluster|countkeysinslot cluster|delslots cluster|delslotsrange cluster|failover cluster|forget \
cluster|getkeysinslot cluster|info cluster|keyslot cluster|links cluster|meet cluster|myid \
cluster|nodes cluster|replicas cluster|replicate cluster|reset cluster|setslot cluster|shards \
cluster|slots command|count command|docs command|getkeys command|info command|list config|get \
config|resetstat config|rewrite config|set function|delete function|dump function|flush function|kill \
function|list function|load function|restore function|stats latency|doctor latency|histogram \
latency|history latency|latest latency|reset memory|doctor memory|stats memory|usage module|list \
module|load module|unload object|encoding object|freq object|idletime object|refcount pubsub|channels \
pubsub|numpat pubsub|numsub pubsub|shardchannels pubsub|shardnumsub script|exists script|flush \
script|kill script|load slowlog|get slowlog|len slowlog|reset xgroup|create xgroup|createconsumer \
xgroup|delconsumer xgroup|destroy xgroup|setid xinfo|consumers xinfo|groups xinfo|stream";

thread_local! {
    /// Names seen on this thread. Their specs are leaked: at most
    /// [`MAX_NAMES`] of them, for the life of the process.
    static NAMES: RefCell<HashMap<Box<[u8]>, Name, FastHash>> = RefCell::new(known_names());
}

fn known_names() -> HashMap<Box<[u8]>, Name, FastHash> {
    let mut names = HashMap::default();
    for text in KNOWN.split_whitespace().chain([OTHER]) {
        names.insert(
            text.as_bytes().into(),
            Name(Box::leak(Box::new(spec(text.to_owned())))),
        );
    }
    names
}

/// The interned name of `lower` (lower case already).
fn intern(lower: &[u8]) -> Name {
    NAMES.with(|names| {
        let mut names = names.borrow_mut();
        if let Some(name) = names.get(lower) {
            return *name;
        }
        if names.len() >= MAX_NAMES {
            return names[OTHER.as_bytes()];
        }
        // ASCII: checked by the caller.
        let text = String::from_utf8_lossy(lower).into_owned();
        let name = Name(Box::leak(Box::new(spec(text))));
        names.insert(lower.into(), name);
        name
    })
}

/// What is known of the command named `text`.
fn spec(text: String) -> Spec {
    let text: &'static str = Box::leak(text.into_boxed_str());
    let role = match text {
        "multi" => Role::Multi,
        "exec" => Role::Exec,
        "discard" => Role::Discard,
        "subscribe" => Role::Subscribe(Subscription::Channel),
        "psubscribe" => Role::Subscribe(Subscription::Pattern),
        "ssubscribe" => Role::Subscribe(Subscription::Shard),
        "unsubscribe" => Role::Unsubscribe(Subscription::Channel),
        "punsubscribe" => Role::Unsubscribe(Subscription::Pattern),
        "sunsubscribe" => Role::Unsubscribe(Subscription::Shard),
        "publish" | "spublish" => Role::Publish,
        _ => Role::Plain,
    };
    Spec {
        text,
        role,
        container: CONTAINERS.contains(&text),
        keyed: !KEYLESS.contains(&text) && !text.contains('|'),
        family: family(text),
        read: read_kind(text),
    }
}

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
pub fn found(name: Name, reply: &Value) -> Option<bool> {
    match (name.0.read?, reply) {
        (_, Value::Error(_)) => None,
        (Read::Single, v) => Some(!empty(v)),
        (Read::Size, Value::Integer(n)) => Some(*n != 0),
        (Read::Ttl, Value::Integer(n)) => Some(*n != -2),
        (Read::Type, Value::Simple(t) | Value::Bulk { head: t, .. }) => {
            Some(t.as_slice() != b"none")
        }
        _ => None,
    }
}

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
        Value::Bulk { len, .. } => *len > 0,
        Value::Simple(text) => !text.as_slice().is_empty(),
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
        (Lookup::Type, Value::Simple(t) | Value::Bulk { head: t, .. }) => {
            Lookups::one(Some(t.as_slice() != b"none"))
        }
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
            .find(|(name, _)| command.name == *name)
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

/// Which key lookups a command makes, by name alone: [`rule`] then reads
/// its arguments where they matter (windows, key counts, `SET … GET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// One key, whatever the arguments.
    One(Lookup),
    /// Every argument a key (`EXISTS`, `TOUCH`, `MGET`).
    EachArgument(Lookup),
    /// `SET`: one key when it has a `GET` argument.
    SetGet,
    /// `HRANDFIELD`, `SRANDMEMBER`, `ZRANDMEMBER`: by their count.
    RandMember,
    /// `SINTER`: one key is a plain read (empty, a miss), several an
    /// intersection.
    Sinter,
    /// `PFCOUNT`: one key is a plain read (found, a hit), several a merge.
    PfCount,
    /// A window from its first two arguments after the key.
    Window,
    Lindex,
    /// `ZRANGE`, `ZRANGESTORE` (`store`: a destination key first).
    Zrange {
        store: bool,
    },
    /// `ZRANGEBYSCORE` and its kind: the bounds that cover every member.
    ZrangeBy {
        low: &'static str,
        high: &'static str,
    },
    /// Several keys, from `keys`.
    Several {
        keys: Keys,
        empty_is_miss: bool,
        found_is_hit: bool,
    },
}

/// Where a multi-key command's keys are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// Every argument.
    All,
    /// Every argument but the first `n` (destinations, operations).
    AllBut(usize),
    /// A count at this argument, the keys after it.
    NumKeysAt(usize),
    /// Exactly this many.
    Fixed(usize),
}

/// The lookup family of the command named `name`.
fn family(name: &str) -> Option<Family> {
    let several = |keys, empty_is_miss, found_is_hit| Family::Several {
        keys,
        empty_is_miss,
        found_is_hit,
    };
    Some(match name {
        "get" | "getdel" | "getex" | "getset" | "dump" | "object|encoding" | "object|freq"
        | "object|idletime" | "object|refcount" => Family::One(Lookup::Nil),
        "set" => Family::SetGet,
        "hrandfield" | "srandmember" | "zrandmember" => Family::RandMember,
        "hgetall" | "hkeys" | "hvals" | "smembers" => Family::One(Lookup::Empty),
        "sinter" => Family::Sinter,
        "llen" | "scard" | "zcard" | "hlen" | "strlen" => Family::One(Lookup::Zero),
        "ttl" | "pttl" | "expiretime" | "pexpiretime" => Family::One(Lookup::Ttl),
        "type" => Family::One(Lookup::Type),
        "exists" | "touch" => Family::EachArgument(Lookup::Counted),
        "mget" => Family::EachArgument(Lookup::PerKey),
        "hget" | "hmget" | "hexists" | "hstrlen" | "sismember" | "smismember" | "zscore"
        | "zmscore" | "getbit" | "zcount" | "zlexcount" | "geodist" | "geohash" | "geopos"
        | "bitcount" | "xlen" => Family::One(Lookup::Found),
        "pfcount" => Family::PfCount,
        "zrank" | "zrevrank" | "lpos" => Family::One(Lookup::Position),
        "lrange" | "zrevrange" | "getrange" | "substr" => Family::Window,
        "lindex" => Family::Lindex,
        "zrange" => Family::Zrange { store: false },
        "zrangestore" => Family::Zrange { store: true },
        "zrangebyscore" => Family::ZrangeBy {
            low: "-inf",
            high: "+inf",
        },
        "zrevrangebyscore" => Family::ZrangeBy {
            low: "+inf",
            high: "-inf",
        },
        "zrangebylex" => Family::ZrangeBy {
            low: "-",
            high: "+",
        },
        "zrevrangebylex" => Family::ZrangeBy {
            low: "+",
            high: "-",
        },
        "sunion" => several(Keys::All, true, false),
        "sdiff" => several(Keys::All, false, false),
        "sinterstore" => several(Keys::AllBut(1), false, true),
        "sunionstore" => several(Keys::AllBut(1), true, false),
        "sdiffstore" => several(Keys::AllBut(1), false, false),
        "sintercard" | "zintercard" | "zinter" => several(Keys::NumKeysAt(0), false, true),
        "zunion" => several(Keys::NumKeysAt(0), true, false),
        "zdiff" => several(Keys::NumKeysAt(0), false, false),
        "zinterstore" => several(Keys::NumKeysAt(1), false, true),
        "zunionstore" => several(Keys::NumKeysAt(1), true, false),
        "zdiffstore" => several(Keys::NumKeysAt(1), false, false),
        "bitop" => several(Keys::AllBut(2), false, false),
        // Several HyperLogLogs; PFMERGE looks its destination up as a source.
        "pfmerge" => several(Keys::All, false, false),
        "lcs" => several(Keys::Fixed(2), false, true),
        _ => return None,
    })
}

/// The lookup rule of a command of `family`, with `rest` its arguments
/// after the name (and subcommand), and how many keys it looks up.
fn rule<W: AsRef<[u8]>>(family: Family, rest: &[W]) -> Option<(Lookup, usize)> {
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
    let rule = match family {
        Family::One(lookup) => lookup,
        Family::EachArgument(lookup) => return Some((lookup, rest.len())),
        Family::SetGet => {
            if !rest
                .iter()
                .skip(2)
                .any(|w| w.as_ref().eq_ignore_ascii_case(b"GET"))
            {
                return None;
            }
            Lookup::Nil
        }
        Family::RandMember => match rest.len() {
            1 => Lookup::Nil,
            _ if int(1) == Some(0) => Lookup::Found,
            _ => Lookup::Empty,
        },
        Family::Sinter if rest.len() == 1 => Lookup::Empty,
        Family::Sinter => return several(rest.len(), false, true),
        Family::PfCount if rest.len() == 1 => Lookup::Found,
        Family::PfCount => return several(rest.len(), false, false),
        Family::Window => Lookup::Window {
            nothing_is_miss: whole(int(1), int(2)),
        },
        Family::Lindex => Lookup::Window {
            nothing_is_miss: matches!(int(1), Some(0 | -1)),
        },
        Family::Zrange { store } => {
            let at = usize::from(store);
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
        Family::ZrangeBy { low, high } => Lookup::Window {
            nothing_is_miss: !has("LIMIT") && is(1, low) && is(2, high),
        },
        Family::Several {
            keys,
            empty_is_miss,
            found_is_hit,
        } => {
            let keys = match keys {
                Keys::All => rest.len(),
                Keys::AllBut(n) => rest.len().saturating_sub(n),
                Keys::NumKeysAt(i) => int(i).and_then(|n| usize::try_from(n).ok())?,
                Keys::Fixed(n) => n,
            };
            return several(keys, empty_is_miss, found_is_hit);
        }
    };
    Some((rule, 1))
}

/// How a request's words are read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    /// Keep each command's first key (for spans); metrics never need it.
    pub keys: bool,
}

impl Command {
    /// The command of a request array; `None` when it is not one.
    pub fn from_request(request: Value, reading: Reading) -> Option<Command> {
        let Value::Array(words) = request else {
            return None;
        };
        let words: Vec<Vec<u8>> = words
            .into_iter()
            .filter_map(|word| match word {
                Value::Bulk { head, .. } => Some(head.into_vec()),
                Value::Simple(text) => Some(text.into_vec()),
                _ => None,
            })
            .collect();
        Command::from_words(&words, reading)
    }

    /// The command of a request's words (bulk strings, the name first);
    /// `None` when they are not one. Only the name, the first key (when
    /// `reading` keeps keys) and channels are copied, each cut to
    /// [`crate::resp::KEEP`] bytes.
    pub fn from_words<W: AsRef<[u8]>>(words: &[W], reading: Reading) -> Option<Command> {
        Command::from_words_of(words, reading, &mut RecentNames::default())
    }

    /// [`Command::from_words`] on a connection that sent `recent` names.
    pub fn from_words_of<W: AsRef<[u8]>>(
        words: &[W],
        reading: Reading,
        recent: &mut RecentNames,
    ) -> Option<Command> {
        let mut name = recent.name(words.first()?.as_ref())?;
        let argc = words.len();
        let mut rest = &words[1..];
        if name.0.container
            && let Some(sub) = rest.first()
            && let Some(full) = name.with_sub(sub.as_ref())
        {
            name = full;
            rest = &rest[1..];
        }
        let (lookup, keys) = match name.0.family.and_then(|family| rule(family, rest)) {
            Some((rule, keys)) => (Some(rule), keys),
            None => (None, 0),
        };
        let kept = |word: &W| -> Box<[u8]> {
            let word = word.as_ref();
            word[..word.len().min(crate::resp::KEEP)].into()
        };
        // Only channels are kept: other arguments (values, and the
        // credentials of AUTH, HELLO, ACL SETUSER, CONFIG SET, MIGRATE) are
        // never kept.
        let args: Box<[Box<[u8]>]> = match name.role() {
            // The channel, not the message.
            Role::Publish => rest.iter().take(1).map(kept).collect(),
            Role::Subscribe(_) | Role::Unsubscribe(_) => rest.iter().map(kept).collect(),
            _ => Box::default(),
        };
        let key = if reading.keys && name.0.keyed {
            rest.first().map(kept)
        } else {
            None
        };
        Some(Command {
            name,
            key,
            argc: u32::try_from(argc).unwrap_or(u32::MAX),
            lookup,
            keys: u32::try_from(keys).unwrap_or(u32::MAX),
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
    pub fn channels(&self) -> &[Box<[u8]>] {
        &self.args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(words: &[&str]) -> Command {
        let array = Value::Array(words.iter().map(|w| Value::bulk(w.as_bytes())).collect());
        Command::from_request(array, Reading { keys: true }).unwrap()
    }

    #[test]
    fn words_read_in_place_keep_only_a_cut_key_and_channels() {
        let key = vec![b'k'; 1000];
        let get = Command::from_words(&[&b"GeT"[..], &key], Reading { keys: true }).unwrap();
        assert_eq!((get.name.as_str(), get.argc), ("get", 2));
        assert_eq!(get.key.as_deref(), Some(&key[..crate::resp::KEEP]));
        let unkept = Command::from_words(&[&b"GET"[..], &key], Reading::default()).unwrap();
        assert!(unkept.key.is_none(), "keys are kept only when asked for");
        let publish =
            Command::from_words(&[&b"PUBLISH"[..], b"ch", b"secret"], Reading { keys: true })
                .unwrap();
        assert_eq!(publish.channels(), [b"ch".to_vec().into_boxed_slice()]);
        let auth = Command::from_words(
            &[&b"AUTH"[..], b"user", b"password"],
            Reading { keys: true },
        )
        .unwrap();
        assert!(auth.key.is_none() && auth.args.is_empty(), "{auth:?}");
        assert!(Command::from_words(&[&b"G\x00T"[..]], Reading { keys: true }).is_none());
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
        assert!(Command::from_request(Value::Integer(1), Reading::default()).is_none());
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
        let bulk = || Value::bulk(b"v");
        let array = |items: Vec<Value>| Value::Array(items);
        assert_eq!(lookups(&["GET", "k"], &bulk()), (1, 0, 0));
        assert_eq!(lookups(&["GET", "k"], &Value::Nil), (0, 1, 0));
        assert_eq!(
            lookups(&["GET", "k"], &Value::bulk(b"")),
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
        assert_eq!(lookups(&["TYPE", "k"], &Value::simple(b"none")), (0, 1, 0));
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
            lookups(&["GETRANGE", "s", "0", "-1"], &Value::bulk(b"")),
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
            lookups(&["SET", "k", "v"], &Value::simple(b"OK")),
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
