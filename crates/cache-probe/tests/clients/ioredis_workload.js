#!/usr/bin/env node
// ioredis workload for the cache-probe tests (run with NODE_PATH pointing at ioredis).
//
// Against 127.0.0.1:$REDIS_PORT, keys under $KEY_PREFIX (default "w:"), it sends plain
// reads (hits and misses) and writes; 5 x 1,000-command pipelines and 5 x 1,000-command
// MULTI/EXEC transactions; transactions with runtime errors, an EXECABORT, a failed
// WATCH and a DISCARD; RESP2 client tracking redirected to a connection subscribed to
// __redis__:invalidate; 200 KiB and 1.5 MiB values; pub/sub with a pattern; a burst of
// auto-pipelined reads; rejected commands. Every reply is checked (exit 1 otherwise);
// one JSON summary line is printed. Connections speak RESP2 (ioredis 6 defaults to
// RESP3: RESP_PROTOCOL=3 selects it) with the ready check off, so no INFO is sent.
"use strict";
const Redis = require("ioredis");
const { isDeepStrictEqual } = require("node:util");

const PORT = Number(process.env.REDIS_PORT);
const P = process.env.KEY_PREFIX || "w:";
const PROTO = Number(process.env.RESP_PROTOCOL || 2);
const sent = Object.fromEntries(("checked_commands pipelines pipeline_commands transactions " +
  "transaction_commands exec_runtime_errors exec_aborted exec_nil discards invalidations " +
  "big_values_set big_bytes_set published received error_replies autopipelined")
  .split(" ").map((name) => [name, 0]));

let seed = 1234; // mulberry32: a small deterministic PRNG
function rand() {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const below = (n) => Math.floor(rand() * n);
const pick = (xs) => xs[below(xs.length)];
function randomBytes(n) { // n is a multiple of 4
  const buf = Buffer.alloc(n);
  for (let i = 0; i < n; i += 4) buf.writeUInt32LE(below(2 ** 32), i);
  return buf;
}

const k = (name) => P + name;
const range = (n, f) => Array.from({ length: n }, (_, i) => f(i));
// Every key the workload touches; all are deleted before and after the run.
const STR_KEYS = range(60, (i) => k(`p:s${i}`)); // only p:s0..p:s49 are ever SET
const [HASH_KEYS, CTR_KEYS, LIST_KEYS, TRK_KEYS, BIG_KEYS] = [["p:h", 10], ["p:c", 5], ["p:l", 5],
  ["trk:", 5], ["big:", 5]].map(([stem, n]) => range(n, (i) => k(stem + i)));
const ALL_KEYS = [...STR_KEYS, ...HASH_KEYS, ...CTR_KEYS, ...LIST_KEYS, ...TRK_KEYS, ...BIG_KEYS,
  ..."s1 s2 h l set z ctr t:str t:a t:b t:w t:d huge ap:s ap:h".split(" ").map(k)];

function fail(msg) {
  console.error(`ioredis_workload: FAIL: ${msg}`);
  process.exit(1);
}
function check(what, got, want) {
  sent.checked_commands += 1;
  if (!isDeepStrictEqual(got, want)) {
    fail(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
}
async function expectError(what, promise, needle) {
  let got;
  try { got = await promise; } catch (e) {
    if (!String(e.message).includes(needle)) fail(`${what}: error ${e.message} lacks ${needle}`);
    return e;
  }
  fail(`${what}: got ${JSON.stringify(got)}, want an error with ${needle}`);
}
async function waitFor(what, cond) {
  for (const end = Date.now() + 5000; !cond(); await new Promise((res) => setTimeout(res, 2))) {
    if (Date.now() > end) fail(`timed out waiting for ${what}`);
  }
}
const connect = (opts = {}) => new Redis({ host: "127.0.0.1", port: PORT, protocol: PROTO,
  enableReadyCheck: false, maxRetriesPerRequest: 0, ...opts });

// Plain commands, in order: [method, args, expected reply]; hits, then misses.
const PLAIN = [
  ["set", [k("s1"), "hello world", "EX", 100], "OK"], ["set", [k("s2"), "two"], "OK"],
  ["get", [k("s1")], "hello world"], ["get", [k("nope")], null],
  ["mget", [k("s1"), k("nope"), k("s2"), k("nope2")], ["hello world", null, "two", null]],
  ["hset", [k("h"), { f1: "v1", f2: "v2", f3: "v3" }], 3],
  ["hget", [k("h"), "f1"], "v1"], ["hget", [k("h"), "zz"], null], ["hget", [k("no"), "f"], null],
  ["hgetall", [k("h")], { f1: "v1", f2: "v2", f3: "v3" }], ["hgetall", [k("nope")], {}],
  ["hmget", [k("h"), "f1", "zz", "f3"], ["v1", null, "v3"]],
  ["rpush", [k("l"), "a", "b", "c", "d"], 4], ["sadd", [k("set"), "x", "y", "z"], 3],
  ["lrange", [k("l"), 0, -1], ["a", "b", "c", "d"]], ["lrange", [k("nope"), 0, -1], []],
  ["smembers", [k("nope")], []], ["zadd", [k("z"), 1, "a", 2, "b", 3, "c"], 3],
  ["zrange", [k("z"), 0, -1], ["a", "b", "c"]], ["zrange", [k("nope"), 0, -1], []],
  ["zrange", [k("z"), 0, 1, "WITHSCORES"], ["a", "1", "b", "2"]],
  ["exists", [k("s1"), k("nope"), k("s1"), k("h"), k("nope2")], 3],
  ["type", [k("s1")], "string"], ["type", [k("nope")], "none"], ["ttl", [k("s2")], -1],
  ["ttl", [k("nope")], -2], ["pttl", [k("nope")], -2], ["strlen", [k("s1")], 11],
  ["getrange", [k("s1"), 0, 4], "hello"], ["getrange", [k("nope"), 0, 4], ""],
  ["strlen", [k("nope")], 0], ["llen", [k("l")], 4], ["llen", [k("no")], 0],
  ["scard", [k("set")], 3], ["scard", [k("no")], 0], ["hlen", [k("h")], 3], ["hlen", [k("no")], 0],
  ["zcard", [k("z")], 3], ["zcard", [k("no")], 0],
  ["lindex", [k("l"), 1], "b"], ["lindex", [k("l"), 99], null],
  ["zscore", [k("z"), "b"], "2"], ["zscore", [k("z"), "q"], null],
  ["sismember", [k("set"), "x"], 1], ["sismember", [k("set"), "w"], 0],
  ["hexists", [k("h"), "f1"], 1], ["hexists", [k("h"), "zz"], 0],
  ["incr", [k("ctr")], 1], ["incr", [k("ctr")], 2], ["expire", [k("s2"), 50], 1],
  ["expire", [k("nope"), 50], 0], ["del", [k("s2"), k("nope")], 1], ["get", [k("s2")], null],
];

async function plain(r) {
  for (const [method, args, want] of PLAIN) {
    check(`${method} ${JSON.stringify(args)}`, await r[method](...args), want);
  }
  check("SMEMBERS", (await r.smembers(k("set"))).sort(), ["x", "y", "z"]);
  const [ttl, pttl] = [await r.ttl(k("s1")), await r.pttl(k("s1"))];
  check("TTL", ttl >= 90 && ttl <= 100, true);
  check("PTTL", pttl >= 90000 && pttl <= 100000, true);
}

// n random commands as [method, args, expected reply]; model tracks the data.
function batch(model, n) {
  const ops = [["set", 20], ["get", 25], ["hset", 10], ["hget", 15], ["mget", 10], ["incr", 10],
    ["lpush", 5], ["lrange", 5]].flatMap(([op, weight]) => Array(weight).fill(op));
  return range(n, () => {
    const op = pick(ops);
    if (op === "set") {
      const key = pick(STR_KEYS.slice(0, 50));
      model.set(key, `v${below(1e6)}`);
      return [op, [key, model.get(key)], "OK"];
    } else if (op === "get") {
      const key = pick(STR_KEYS);
      return [op, [key], model.get(key) ?? null];
    } else if (op === "hset" || op === "hget") {
      const key = pick(HASH_KEYS);
      const h = model.get(key) ?? model.set(key, new Map()).get(key);
      const f = `f${below(op === "hset" ? 20 : 25)}`;
      if (op === "hget") return [op, [key, f], h.get(f) ?? null];
      const isNew = h.has(f) ? 0 : 1;
      h.set(f, `h${below(99)}`);
      return [op, [key, f, h.get(f)], isNew];
    } else if (op === "mget") {
      const keys = range(2 + below(6), () => pick(STR_KEYS));
      return [op, keys, keys.map((x) => model.get(x) ?? null)];
    } else if (op === "incr") {
      const key = pick(CTR_KEYS);
      model.set(key, (model.get(key) ?? 0) + 1);
      return [op, [key], model.get(key)];
    }
    const key = pick(LIST_KEYS);
    const list = model.get(key) ?? model.set(key, []).get(key);
    if (op === "lrange") return [op, [key, 0, 9], list.slice(0, 10)];
    list.unshift(`e${below(1000)}`);
    return [op, [key, list[0]], list.length];
  });
}

async function runBatches(r, transaction, model) {
  const kind = transaction ? "transaction" : "pipeline";
  for (let n = 0; n < 5; n++) {
    const cmds = batch(model, 1000);
    const pipe = transaction ? r.multi() : r.pipeline();
    for (const [method, args] of cmds) pipe[method](...args);
    const replies = await pipe.exec();
    cmds.forEach(([method, args, want], i) => {
      const [err, got] = replies[i];
      if (err || !isDeepStrictEqual(got, want)) {
        fail(`${kind} command ${i} ${method} ${args}: got ${err || JSON.stringify(got)}, ` +
          `want ${JSON.stringify(want)}`);
      }
    });
    sent[`${kind}s`] += 1;
    sent[`${kind}_commands`] += cmds.length;
  }
}

async function failingTransactions(r, other) {
  // (a) Runtime errors: EXEC runs every queued command, two of them fail.
  const res = await r.multi().set(k("t:str"), "abc").incr(k("t:str")).lpush(k("t:str"), "x")
    .append(k("t:str"), "d").get(k("t:str")).exec();
  if (!(res[0][1] === "OK" && /not an integer/.test(res[1][0]) && /WRONGTYPE/.test(res[2][0]) &&
        isDeepStrictEqual(res.slice(3), [[null, 4], [null, "abcd"]]))) {
    fail(`EXEC with runtime errors: ${res}`);
  }
  // (b) GET without a key is rejected when queued, so EXEC answers EXECABORT.
  const e = await expectError("EXECABORT",
    r.multi().set(k("t:a"), "1").call("GET").set(k("t:b"), "2").exec(), "EXECABORT");
  if (!/wrong number of arguments/.test(e.previousErrors?.[0]?.message)) fail(`EXECABORT: ${e}`);
  check("EXISTS after EXECABORT", await r.exists(k("t:a"), k("t:b")), 0);
  // (c) WATCH, another connection changes the key, EXEC returns nil.
  check("WATCH", await r.watch(k("t:w")), "OK");
  check("GET watched", await r.get(k("t:w")), null);
  check("SET from other", await other.set(k("t:w"), "changed"), "OK");
  check("EXEC after a changed WATCH", await r.multi().set(k("t:w"), "mine").exec(), null);
  check("GET watched", await r.get(k("t:w")), "changed");
  Object.assign(sent, { transactions: sent.transactions + 3, exec_runtime_errors: 2,
    exec_aborted: 1, exec_nil: 1, transaction_commands: sent.transaction_commands + 5 + 3 + 1 });
  // (d) MULTI ... DISCARD: MULTI is sent at once, each command answers QUEUED.
  check("MULTI", await r.multi({ pipeline: false }), "OK");
  check("INCR queued", await r.incr(k("t:d")), "QUEUED");
  check("DISCARD", await r.discard(), "OK");
  check("GET discarded", await r.get(k("t:d")), null);
  sent.discards += 1;
}

// RESP2 CLIENT TRACKING: invalidations go to a connection subscribed to __redis__:invalidate.
async function tracking(r, other) {
  const tr = connect(), sub = connect({ protocol: 2 }); // RESP3 would get pushes ioredis drops
  const got = [];
  sub.on("messageBuffer", (channel, keys) => got.push(...[keys].flat().map(String)));
  const id = await sub.client("ID");
  check("SUBSCRIBE", await sub.subscribe("__redis__:invalidate"), 1);
  check("MSET", await r.mset(...TRK_KEYS.flatMap((key, i) => [key, `t${i}`])), "OK");
  check("CLIENT TRACKING ON", await tr.client("TRACKING", "ON", "REDIRECT", id), "OK");
  check("GET tracked", await tr.get(TRK_KEYS[0]), "t0");
  check("MGET tracked", await tr.mget(TRK_KEYS.slice(1)), ["t1", "t2", "t3", "t4"]);
  check("SET other", await other.set(TRK_KEYS[0], "new"), "OK");
  check("DEL other", await other.del(TRK_KEYS[1], TRK_KEYS[2]), 2);
  check("APPEND other", await other.append(TRK_KEYS[3], "x"), 3);
  check("SET other again", await other.set(TRK_KEYS[0], "newer"), "OK"); // no longer tracked
  await waitFor("invalidations", () => got.length >= 4);
  check("PING", await tr.ping(), "PONG");
  if (!isDeepStrictEqual(got.sort(), TRK_KEYS.slice(0, 4))) fail(`invalidations: ${got}`);
  sent.invalidations += got.length;
  check("CLIENT TRACKING OFF", await tr.client("TRACKING", "OFF"), "OK");
  check("UNSUBSCRIBE", await sub.unsubscribe(), 0);
  await Promise.all([tr.quit(), sub.quit()]);
}

async function bigValues(r) {
  const vals = range(5, () => randomBytes(200 * 1024)), huge = randomBytes(1536 * 1024);
  check("SET 200 KiB", await r.set(BIG_KEYS[0], vals[0]), "OK");
  check("GET 200 KiB", (await r.getBuffer(BIG_KEYS[0])).equals(vals[0]), true);
  const pipe = r.pipeline();
  for (let i = 1; i < 5; i++) pipe.set(BIG_KEYS[i], vals[i]);
  BIG_KEYS.forEach((key) => pipe.getBuffer(key));
  const res = await pipe.exec();
  if (!res.every(([err, v], i) => !err && (i < 4 ? v === "OK" : v.equals(vals[i - 4])))) {
    fail("pipeline of 200 KiB values: the values read back differ");
  }
  check("SET 1.5 MiB", await r.set(k("huge"), huge), "OK");
  check("GET 1.5 MiB", (await r.getBuffer(k("huge"))).equals(huge), true);
  Object.assign(sent, { pipelines: sent.pipelines + 1, big_values_set: 6,
    pipeline_commands: sent.pipeline_commands + 9, big_bytes_set: 5 * 200 * 1024 + huge.length });
}

async function pubsub(other) {
  const ps = connect(), got = [];
  ps.on("message", (chan, data) => got.push(["message", chan, data]));
  ps.on("pmessage", (pattern, chan, data) => got.push([`pmessage ${pattern}`, chan, data]));
  check("PSUBSCRIBE", await ps.psubscribe(k("ev.*")), 1);
  check("SUBSCRIBE", await ps.subscribe(k("chan")), 2);
  const want = range(200, (i) => i % 2 === 0 ? ["message", k("chan"), `m${i}`]
    : [`pmessage ${k("ev.*")}`, k(`ev.${i % 7}`), `m${i}`]);
  for (const [, chan, data] of want) {
    if ((await other.publish(chan, data)) !== 1) fail(`PUBLISH ${chan} reached no subscriber`);
  }
  sent.published += want.length;
  await waitFor("messages", () => got.length >= want.length);
  if (!isDeepStrictEqual(got, want)) fail(`messages: got ${JSON.stringify(got)}`);
  sent.received += got.length;
  check("UNSUBSCRIBE", await ps.unsubscribe(), 1);
  check("PUNSUBSCRIBE", await ps.punsubscribe(), 0);
  await ps.quit();
}

// A burst of concurrent reads that ioredis batches into pipelines by itself.
async function autoPipelining() {
  const ap = connect({ enableAutoPipelining: true });
  check("SET", await ap.set(k("ap:s"), "x"), "OK");
  check("HSET", await ap.hset(k("ap:h"), "f", "y"), 1);
  const calls = range(3000, (i) => [ // [promise, expected reply], none awaited yet
    () => [ap.get(k(i % 2 ? "ap:s" : "nope")), i % 2 ? "x" : null],
    () => [ap.mget(k("ap:s"), k("nope")), ["x", null]],
    () => [ap.hget(k("ap:h"), i % 2 ? "f" : "g"), i % 2 ? "y" : null]][i % 3]());
  const got = await Promise.all(calls.map(([promise]) => promise));
  if (!isDeepStrictEqual(got, calls.map(([, want]) => want))) fail("auto-pipelined replies differ");
  sent.autopipelined += calls.length;
  await ap.quit();
}

async function rejected(r) {
  await expectError("unknown command", r.call("NOSUCHCMD", k("x")), "unknown command");
  await expectError("GET arity", r.call("GET"), "wrong number of arguments");
  await expectError("SET arity", r.call("SET", k("x")), "wrong number of arguments");
  await expectError("WRONGTYPE", r.lpush(k("s1"), "x"), "WRONGTYPE");
  sent.error_replies += 4;
}

async function main() {
  const start = Date.now();
  const r = connect(), other = connect();
  await r.del(...ALL_KEYS);
  await plain(r);
  const model = new Map(); // what the pipelines and transactions have written so far
  await runBatches(r, false, model);
  await runBatches(r, true, model);
  await failingTransactions(r, other);
  await tracking(r, other);
  await bigValues(r);
  await pubsub(other);
  await autoPipelining();
  await rejected(r);
  await r.del(...ALL_KEYS);
  await Promise.all([r.quit(), other.quit()]);
  console.log(JSON.stringify({ client: "ioredis", protocol: PROTO, ...sent,
    elapsed_ms: Date.now() - start }));
}

main().catch((e) => fail(e.stack || e));
