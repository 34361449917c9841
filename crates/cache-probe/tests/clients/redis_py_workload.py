#!/usr/bin/env python3
"""redis-py workload for the cache-probe tests.

Against 127.0.0.1:$REDIS_PORT, keys under $KEY_PREFIX (default "w:"), it sends plain
reads (hits and misses) and writes; 5 x 1,000-command pipelines and 5 x 1,000-command
MULTI/EXEC transactions; transactions with runtime errors, an EXECABORT, a failed
WATCH and a DISCARD; RESP3 client tracking with invalidation pushes; 200 KiB and
1.5 MiB values; pub/sub with a pattern; rejected commands. Every reply is checked
(exit 1 otherwise); one JSON summary line is printed. Main connections speak RESP2
(RESP_PROTOCOL=3 changes that); the tracking connection speaks RESP3.
"""
import json
import os
import random
import sys
import time

import redis
from redis.exceptions import ResponseError, WatchError

PORT = int(os.environ["REDIS_PORT"])
P = os.environ.get("KEY_PREFIX", "w:")
PROTO = int(os.environ.get("RESP_PROTOCOL", "2"))
rng = random.Random(1234)
sent = dict.fromkeys(
    "checked_commands pipelines pipeline_commands transactions transaction_commands"
    " exec_runtime_errors exec_aborted exec_nil discards invalidations big_values_set"
    " big_bytes_set published received error_replies".split(), 0)


def k(name):
    return P + name


# Every key the workload touches; all are deleted before and after the run.
STR_KEYS = [k(f"p:s{i}") for i in range(60)]  # only p:s0..p:s49 are ever SET
HASH_KEYS, CTR_KEYS, LIST_KEYS = ([k(f"p:{t}{i}") for i in range(n)]
                                  for t, n in (("h", 10), ("c", 5), ("l", 5)))
ALL_KEYS = STR_KEYS + HASH_KEYS + CTR_KEYS + LIST_KEYS + [k(n) for n in (
    "s1 s2 h l set z ctr t:str t:a t:b t:w t:d huge".split()
    + [f"trk:{i}" for i in range(5)] + [f"big:{i}" for i in range(5)])]


def fail(msg):
    print(f"redis_py_workload: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def s(x):
    """Normalise a reply for comparison: bytes to str, containers recursively."""
    if isinstance(x, (list, tuple, set)):
        return sorted(map(s, x)) if isinstance(x, set) else [s(i) for i in x]
    if isinstance(x, dict):
        return {s(a): s(b) for a, b in x.items()}
    return x.decode() if isinstance(x, bytes) else x


def check(what, got, want):
    """Check the reply of one command sent on its own."""
    sent["checked_commands"] += 1
    if s(got) != want:
        fail(f"{what}: got {got!r}, want {want!r}")


def expect_error(what, fn, needle, error=ResponseError):
    try:
        got = fn()
    except error as e:
        if needle not in str(e):
            fail(f"{what}: error {e!r} lacks {needle!r}")
        return
    fail(f"{what}: got {got!r}, want an error with {needle!r}")


def client(**kw):
    return redis.Redis(host="127.0.0.1", port=PORT, protocol=PROTO, **kw)


# Plain commands, in order: (method, args, expected reply); hits, then misses.
PLAIN = [
    ("set", (k("s1"), "hello world", 100), True), ("set", (k("s2"), "two"), True),
    ("get", (k("s1"),), "hello world"), ("get", (k("nope"),), None),
    ("mget", ([k("s1"), k("nope"), k("s2"), k("nope2")],), ["hello world", None, "two", None]),
    ("hset", (k("h"), None, None, {"f1": "v1", "f2": "v2", "f3": "v3"}), 3),
    ("hget", (k("h"), "f1"), "v1"), ("hget", (k("h"), "zz"), None), ("hget", (k("no"), "f"), None),
    ("hgetall", (k("h"),), {"f1": "v1", "f2": "v2", "f3": "v3"}), ("hgetall", (k("nope"),), {}),
    ("hmget", (k("h"), ["f1", "zz", "f3"]), ["v1", None, "v3"]),
    ("rpush", (k("l"), "a", "b", "c", "d"), 4), ("sadd", (k("set"), "x", "y", "z"), 3),
    ("lrange", (k("l"), 0, -1), ["a", "b", "c", "d"]), ("lrange", (k("nope"), 0, -1), []),
    ("smembers", (k("set"),), ["x", "y", "z"]), ("smembers", (k("nope"),), []),
    ("zadd", (k("z"), {"a": 1, "b": 2, "c": 3}), 3),
    ("zrange", (k("z"), 0, -1), ["a", "b", "c"]), ("zrange", (k("nope"), 0, -1), []),
    ("zrange", (k("z"), 0, 1, False, True), [["a", 1.0], ["b", 2.0]]),  # WITHSCORES
    ("exists", (k("s1"), k("nope"), k("s1"), k("h"), k("nope2")), 3),
    ("type", (k("s1"),), "string"), ("type", (k("nope"),), "none"), ("ttl", (k("s2"),), -1),
    ("ttl", (k("nope"),), -2), ("pttl", (k("nope"),), -2), ("strlen", (k("s1"),), 11),
    ("getrange", (k("s1"), 0, 4), "hello"), ("getrange", (k("nope"), 0, 4), ""),
    ("strlen", (k("nope"),), 0),
    ("llen", (k("l"),), 4), ("llen", (k("no"),), 0), ("scard", (k("set"),), 3),
    ("scard", (k("no"),), 0), ("hlen", (k("h"),), 3), ("hlen", (k("no"),), 0),
    ("zcard", (k("z"),), 3), ("zcard", (k("no"),), 0),
    ("lindex", (k("l"), 1), "b"), ("lindex", (k("l"), 99), None),
    ("zscore", (k("z"), "b"), 2.0), ("zscore", (k("z"), "q"), None),
    ("sismember", (k("set"), "x"), 1), ("sismember", (k("set"), "w"), 0),
    ("hexists", (k("h"), "f1"), True), ("hexists", (k("h"), "zz"), False),
    ("execute_command", ("INCR", k("ctr")), 1),
    ("incr", (k("ctr"),), 2),  # redis-py's incr() sends INCRBY key 1, not INCR
    ("expire", (k("s2"), 50), True), ("expire", (k("nope"), 50), False),
    ("delete", (k("s2"), k("nope")), 1), ("get", (k("s2"),), None),
]


def plain(r):
    for method, args, want in PLAIN:
        check(f"{method}{args}", getattr(r, method)(*args), want)
    ttl, pttl = r.ttl(k("s1")), r.pttl(k("s1"))
    check("TTL", 90 <= ttl <= 100, True)
    check("PTTL", 90_000 <= pttl <= 100_000, True)


def batch(model, n):
    """n random commands as (method, args, expected reply); model tracks the data."""
    out = []
    for op in rng.choices("set get hset hget mget incr lpush lrange".split(),
                          [20, 25, 10, 15, 10, 10, 5, 5], k=n):
        if op == "set":
            key = rng.choice(STR_KEYS[:50])
            model[key] = f"v{rng.randrange(10**6)}"
            out.append((op, (key, model[key]), True))
        elif op == "get":
            key = rng.choice(STR_KEYS)
            out.append((op, (key,), model.get(key)))
        elif op == "hset":
            key, f, h = rng.choice(HASH_KEYS), f"f{rng.randrange(20)}", f"h{rng.randrange(99)}"
            out.append((op, (key, f, h), int(f not in model.setdefault(key, {}))))
            model[key][f] = h
        elif op == "hget":
            key, f = rng.choice(HASH_KEYS), f"f{rng.randrange(25)}"
            out.append((op, (key, f), model.get(key, {}).get(f)))
        elif op == "mget":
            keys = rng.sample(STR_KEYS, rng.randrange(2, 8))
            out.append((op, (keys,), [model.get(x) for x in keys]))
        elif op == "incr":
            key = rng.choice(CTR_KEYS)
            model[key] = model.get(key, 0) + 1
            out.append(("execute_command", ("INCR", key), model[key]))  # incr() sends INCRBY
        elif op == "lpush":
            key, e = rng.choice(LIST_KEYS), f"e{rng.randrange(1000)}"
            model.setdefault(key, []).insert(0, e)
            out.append((op, (key, e), len(model[key])))
        else:
            key = rng.choice(LIST_KEYS)
            out.append((op, (key, 0, 9), model.get(key, [])[:10]))
    return out


def run_batches(r, transaction, model):
    kind = "transaction" if transaction else "pipeline"
    for _ in range(5):
        cmds = batch(model, 1000)
        pipe = r.pipeline(transaction=transaction)
        for method, args, _ in cmds:
            getattr(pipe, method)(*args)
        for i, ((method, args, want), got) in enumerate(zip(cmds, pipe.execute(), strict=True)):
            if s(got) != want:
                fail(f"{kind} command {i} {method}{args}: got {got!r}, want {want!r}")
        sent[kind + "s"] += 1
        sent[kind + "_commands"] += len(cmds)


def failing_transactions(r, other):
    # (a) Runtime errors: EXEC runs every queued command, two of them fail.
    pipe = r.pipeline(transaction=True)
    pipe.set(k("t:str"), "abc").execute_command("INCR", k("t:str")).lpush(k("t:str"), "x")
    res = pipe.append(k("t:str"), "d").get(k("t:str")).execute(raise_on_error=False)
    if not (res[0] is True and "not an integer" in str(res[1]) and "WRONGTYPE" in str(res[2])
            and res[3:] == [4, b"abcd"]):
        fail(f"EXEC with runtime errors: {res!r}")
    # (b) GET without a key is rejected when queued, so EXEC answers EXECABORT.
    pipe = r.pipeline(transaction=True)
    pipe.set(k("t:a"), "1").execute_command("GET").set(k("t:b"), "2")
    expect_error("EXECABORT", pipe.execute, "wrong number of arguments")
    check("EXISTS after EXECABORT", r.exists(k("t:a"), k("t:b")), 0)
    # (c) WATCH, another connection changes the key, EXEC returns nil.
    with r.pipeline() as pipe:
        pipe.watch(k("t:w"))
        check("GET watched", pipe.get(k("t:w")), None)
        check("SET from other", other.set(k("t:w"), "changed"), True)
        pipe.multi()
        pipe.set(k("t:w"), "mine")
        expect_error("EXEC after a changed WATCH", pipe.execute, "Watched variable", WatchError)
    check("GET watched", r.get(k("t:w")), "changed")
    sent.update(transactions=sent["transactions"] + 3, exec_runtime_errors=2, exec_aborted=1,
                exec_nil=1, transaction_commands=sent["transaction_commands"] + 5 + 3 + 1)
    # (d) MULTI ... DISCARD, sent by hand on a dedicated connection.
    solo = client(single_connection_client=True)
    check("MULTI", solo.execute_command("MULTI"), "OK")
    check("INCR queued", solo.execute_command("INCR", k("t:d")), "QUEUED")
    check("DISCARD", solo.execute_command("DISCARD"), "OK")
    check("GET discarded", solo.get(k("t:d")), None)
    solo.close()
    sent["discards"] += 1


def tracking(r, other):
    """RESP3 CLIENT TRACKING: reads on one connection, writes on another."""
    tr = redis.Redis(host="127.0.0.1", port=PORT, protocol=3, single_connection_client=True)
    got = []
    tr.connection._parser.set_invalidation_push_handler(lambda push: got.extend(s(push[1])))
    keys = [k(f"trk:{i}") for i in range(5)]
    check("MSET", r.mset({key: f"t{i}" for i, key in enumerate(keys)}), True)
    check("CLIENT TRACKING ON", tr.client_tracking_on(), "OK")
    check("GET tracked", tr.get(keys[0]), "t0")
    check("MGET tracked", tr.mget(keys[1:]), ["t1", "t2", "t3", "t4"])
    check("SET other", other.set(keys[0], "new"), True)
    check("DEL other", other.delete(keys[1], keys[2]), 2)
    check("APPEND other", other.append(keys[3], "x"), 3)
    check("SET other again", other.set(keys[0], "newer"), True)  # no longer tracked
    check("PING", tr.ping(), True)  # the invalidation pushes arrive before the PONG
    if sorted(got) != sorted(keys[:4]):
        fail(f"invalidations: got {got!r}, want {keys[:4]!r}")
    sent["invalidations"] += len(got)
    check("CLIENT TRACKING OFF", tr.client_tracking_off(), "OK")
    tr.close()


def big_values(r):
    vals, huge = [rng.randbytes(200 * 1024) for _ in range(5)], rng.randbytes(1536 * 1024)
    check("SET 200 KiB", r.set(k("big:0"), vals[0]), True)
    check("GET 200 KiB", r.get(k("big:0")) == vals[0], True)
    pipe = r.pipeline(transaction=False)
    for i in range(1, 5):
        pipe.set(k(f"big:{i}"), vals[i])
    for i in range(5):
        pipe.get(k(f"big:{i}"))
    if pipe.execute() != [True] * 4 + vals:
        fail("pipeline of 200 KiB values: the values read back differ")
    check("SET 1.5 MiB", r.set(k("huge"), huge), True)
    check("GET 1.5 MiB", r.get(k("huge")) == huge, True)
    sent.update(pipelines=sent["pipelines"] + 1, pipeline_commands=sent["pipeline_commands"] + 9,
                big_values_set=6, big_bytes_set=sum(map(len, vals)) + len(huge))


def confirmed(ps, *types):
    got = [ps.get_message(timeout=5) for _ in types]
    if [m and s(m["type"]) for m in got] != list(types):
        fail(f"pub/sub confirmations: got {got!r}, want {types!r}")


def pubsub(r, other):
    ps = r.pubsub()
    ps.psubscribe(k("ev.*"))
    ps.subscribe(k("chan"))
    confirmed(ps, "psubscribe", "subscribe")
    want = []
    for i in range(200):
        chan = k("chan") if i % 2 == 0 else k(f"ev.{i % 7}")
        if other.publish(chan, f"m{i}") != 1:
            fail(f"PUBLISH {chan} reached no subscriber")
        want.append(("message" if i % 2 == 0 else "pmessage", chan, f"m{i}"))
    sent["published"] += 200
    for i, (typ, chan, data) in enumerate(want):
        m = ps.get_message(timeout=5)
        if m is None or [s(m["type"]), s(m["channel"]), s(m["data"])] != [typ, chan, data]:
            fail(f"message {i}: got {m!r}, want {(typ, chan, data)!r}")
        if typ == "pmessage" and s(m["pattern"]) != k("ev.*"):
            fail(f"message {i}: pattern {m['pattern']!r}")
        sent["received"] += 1
    ps.unsubscribe()
    ps.punsubscribe()
    confirmed(ps, "unsubscribe", "punsubscribe")
    ps.close()


def rejected(r):
    for what, args, needle in (("unknown command", ("NOSUCHCMD", k("x")), "unknown command"),
                               ("GET arity", ("GET",), "wrong number of arguments"),
                               ("SET arity", ("SET", k("x")), "wrong number of arguments"),
                               ("WRONGTYPE", ("LPUSH", k("s1"), "x"), "WRONGTYPE")):
        expect_error(what, lambda: r.execute_command(*args), needle)
        sent["error_replies"] += 1


def main():
    start = time.monotonic()
    r, other = client(), client()
    r.delete(*ALL_KEYS)
    plain(r)
    model = {}  # what the pipelines and transactions have written so far
    run_batches(r, False, model)
    run_batches(r, True, model)
    failing_transactions(r, other)
    tracking(r, other)
    big_values(r)
    pubsub(r, other)
    rejected(r)
    r.delete(*ALL_KEYS)
    print(json.dumps({"client": "redis-py", "protocol": PROTO, **sent,
                      "elapsed_ms": round((time.monotonic() - start) * 1000)}))


if __name__ == "__main__":
    main()
