// Subscriptions named at connect (`Bus.connect(url, {subscribe: [...]})`,
// docs/protocol.md §5.1) against the real server: the upgrade request names
// them, the server makes them before any request, and the first subscribe
// or watch of each pattern gets that subscription. test/proxy.js shows what
// the client really sent (its upgrade request line and its messages), and
// plays a server from before §5.1 (`olderServer`) or one whose hello says
// another number.
import assert from "node:assert/strict";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { BadPattern, Bus, JSON_CODEC, LimitReached, MSGPACK, Unavailable } from "../src/index.js";
import { startProxy } from "./proxy.js";
import { collector, states } from "./record.js";
import { CLIENT_ENV, startServer } from "./server.js";

for (const name of CLIENT_ENV) delete process.env[name];
process.env.XDG_DATA_HOME = join(tmpdir(), "ipcbus-js-no-such-dir"); // no real token file

/** A test that waits for more than this has hung. */
const LIMIT = { timeout: 20000 };
/** At most this many subscriptions per connection: one more is 429 `limit`. */
const MAX_SUBS = 3;

let server;
let proxy; // passes everything on, and records it
let older; // a server from before the subscriptions in the upgrade request
let other; // a client straight to the server
before(async () => {
  server = await startServer(["--max-subs", String(MAX_SUBS)]);
  process.env.IPCBUS_DATA_DIR = server.dataDir;
  const port = Number(new URL(server.url).port);
  proxy = await startProxy(port);
  older = await startProxy(port, { olderServer: true });
  other = await Bus.connect(server.url);
});
after(async () => {
  other.close();
  await Promise.all([proxy.close(), older.close()]);
  await server.stop();
});

/** What the client sent on connection `conn` through `via`: its request line and `sub`/`unsub` messages. */
function sentOn(via, conn) {
  const line = via.requests.find((r) => r.conn === conn)?.line;
  const messages = via.sent.filter((s) => s.conn === conn).map((s) => s.message);
  return { line, subs: messages.filter((m) => m.op === "sub"), unsubs: messages.filter((m) => m.op === "unsub") };
}

/** The `sub` parameters of a request line, decoded as the server decodes them. */
function subParams(line) {
  return new URL(line.split(" ")[1], "http://x").searchParams.getAll("sub");
}

/** An event as text: "kind key value", or "synced". */
const show = (ev) => (ev.kind === "synced" ? "synced" : `${ev.kind} ${ev.key} ${JSON.stringify(ev.value)}`);

for (const codec of [MSGPACK, JSON_CODEC]) {
  const c = codec.split(".")[2];
  test(`${codec}: named at connect, in the upgrade request, with no sub request: replay, synced and live by callback, for await and watch`, LIMIT, async () => {
    await other.set(`nc.${c}.a`, 1);
    await other.set(`nc.${c}.b`, { two: [2] });
    await other.set(`nd.${c}.x.y`, "x");
    const patterns = [`nc.${c}.*`, `nd.${c}.>`, `nc.${c}.a`];
    const bus = await Bus.connect(proxy.url, { codec, subscribe: patterns });
    const conn = proxy.attempts;
    const all = collector();
    // What came meanwhile reaches the callback once the caller has the handle (else: a ReferenceError, and the event is lost).
    const sub = await bus.subscribe(`nc.${c}.*`, (ev) => all.callback(sub && ev));
    const mirror = await bus.watch(`nd.${c}.>`);
    const one = await bus.subscribe(`nc.${c}.a`);
    await mirror.synced();
    assert.deepEqual(mirror.keys(), [`nd.${c}.x.y`]);
    await all.when((ev) => ev.kind === "synced");
    await other.set(`nc.${c}.c`, 3);
    await other.set(`nc.${c}.a`, 4);
    await all.when((ev) => ev.value === 4);
    const seen = all.events.map(show);
    assert.deepEqual(seen.slice(0, 2).sort(), [`val nc.${c}.a 1`, `val nc.${c}.b {"two":[2]}`]);
    assert.deepEqual(seen.slice(2), ["synced", `val nc.${c}.c 3`, `val nc.${c}.a 4`]);
    const fromOne = [];
    for await (const ev of one) {
      fromOne.push(ev.kind === "synced" ? "synced" : `${ev.key} ${ev.value}`);
      if (ev.value === 4) break;
    }
    assert.deepEqual(fromOne, [`nc.${c}.a 1`, "synced", `nc.${c}.a 4`]);
    // The upgrade request named them, in order, next to the token; the client sent no `sub`.
    const sent = sentOn(proxy, conn);
    assert.match(sent.line, /^GET \/ws\?token=[0-9a-f]+&sub=/);
    assert.deepEqual(subParams(sent.line), patterns);
    assert.deepEqual(sent.subs, []);
    // Each was taken once: the same pattern again is a subscription of its own, asked for.
    const again = await bus.subscribe(`nc.${c}.a`);
    assert.notEqual(again, one);
    assert.deepEqual(sentOn(proxy, conn).subs.map((m) => m.pattern), [`nc.${c}.a`]);
    sub.close();
    mirror.close();
    bus.close();
  });
}

test("events that come in the same read as the upgrade's response and the hello reach their subscriptions", LIMIT, async (t) => {
  for (const key of ["a", "b", "c"]) await other.set(`same.${key}`, key);
  const holding = await startProxy(Number(new URL(server.url).port));
  t.after(() => holding.close());
  holding.hold();
  const connecting = Bus.connect(holding.url, { subscribe: ["same.*", "same.b"] });
  // The response, the hello and both replays wait in the proxy, then go in one write.
  await holding.holding((bytes) => bytes.toString("latin1").split("synced").length > 2);
  holding.unhold();
  const bus = await connecting;
  t.after(() => bus.close());
  const mirror = await bus.watch("same.*");
  const one = await bus.watch("same.b");
  await mirror.synced();
  await one.synced();
  assert.deepEqual(mirror.keys(), ["same.a", "same.b", "same.c"]);
  assert.deepEqual(one.keys(), ["same.b"]);
});

test("a server from before them ignores them: they are sent as sub requests, and work the same", LIMIT, async () => {
  await other.set("old.a", 1);
  await other.set("old.b", 2);
  const bus = await Bus.connect(older.url, { subscribe: ["old.*", "old.b"] });
  const conn = older.attempts;
  const mirror = await bus.watch("old.*");
  const only = collector();
  await bus.subscribe("old.b", only.callback);
  await mirror.synced();
  assert.deepEqual(mirror.keys(), ["old.a", "old.b"]);
  await other.set("old.b", 3);
  await only.when((ev) => ev.value === 3);
  assert.deepEqual(only.events.map(show), ["val old.b 2", "synced", "val old.b 3"]);
  const sent = sentOn(older, conn);
  assert.deepEqual(subParams(sent.line), ["old.*", "old.b"]); // asked, but the proxy kept them from the server
  assert.deepEqual(sent.subs.map((m) => m.pattern), ["old.*", "old.b"]);
  mirror.close();
  bus.close();
});

test("a hello that says another number: the client ends those and asks again", LIMIT, async (t) => {
  const miscounting = await startProxy(Number(new URL(server.url).port), { hello: (h) => (h.subs -= 1) });
  t.after(() => miscounting.close());
  await other.set("count.a", 1);
  const bus = await Bus.connect(miscounting.url, { subscribe: ["count.*", "count.a"] });
  t.after(() => bus.close());
  const mirror = await bus.watch("count.*");
  const one = await bus.watch("count.a");
  await mirror.synced();
  await one.synced();
  assert.deepEqual([mirror.keys(), one.keys()], [["count.a"], ["count.a"]]);
  const sent = sentOn(miscounting, miscounting.attempts);
  assert.deepEqual(sent.unsubs, [{ op: "unsub", sub: 1 }]);
  assert.deepEqual(sent.subs.map((m) => m.pattern), ["count.*", "count.a"]);
});

test("a list the server refuses fails the connect at once: BadPattern, LimitReached, from an older server too", LIMIT, async () => {
  const started = performance.now();
  const recorded = states();
  const options = { connectTimeout: 60000, onState: recorded.onState };
  const bad = Bus.connect(server.url, { ...options, subscribe: ["fine.*", "a.>.b"] });
  await assert.rejects(bad, (e) => e instanceof BadPattern && e.code === "bad_pattern" && /refused the subscriptions named at connect.*'>'/.test(e.message));
  assert.deepEqual(recorded.seen.map(([state]) => state), ["connecting", "closed"]);
  const tooMany = Array.from({ length: MAX_SUBS + 1 }, (_, i) => `many.${i}`);
  await assert.rejects(Bus.connect(server.url, { ...options, subscribe: tooMany }), (e) => e instanceof LimitReached && /max_subs \(3\)/.test(e.message));
  const attempts = older.attempts;
  await assert.rejects(Bus.connect(older.url, { ...options, subscribe: ["a.>.b"] }), BadPattern);
  assert.equal(older.attempts, attempts + 1); // not tried again
  assert.ok(performance.now() - started < 5000, `took ${performance.now() - started} ms`);
  // What the client itself can tell is wrong is a TypeError.
  assert.throws(() => new Bus(server.url, { subscribe: "weather.>" }), TypeError);
  assert.throws(() => new Bus(server.url, { subscribe: ["ok", 7] }), TypeError);
});

test("after a restart of the server they deliver again: the new connection asks with sub requests, not in its URL", LIMIT, async () => {
  await other.set("rs.kept", "before", { persist: true });
  const recorded = states();
  const bus = await Bus.connect(proxy.url, { subscribe: ["rs.*"], onState: recorded.onState });
  const first = proxy.attempts;
  const mirror = await bus.watch("rs.*");
  await mirror.synced();
  assert.equal(mirror.get("rs.kept"), "before");
  await server.restart();
  await recorded.reached("open", 2);
  await other.set("rs.kept", "after");
  await other.set("rs.new", 1);
  while (mirror.get("rs.kept") !== "after" || !mirror.has("rs.new")) await mirror.changed();
  const later = proxy.requests.filter((r) => r.conn > first);
  assert.ok(later.length > 0);
  for (const { line } of later) assert.deepEqual(subParams(line), [], line);
  const resent = proxy.sent.filter((s) => s.conn > first && s.message.op === "sub").map((s) => s.message.pattern);
  assert.deepEqual(resent, ["rs.*"]);
  assert.deepEqual(sentOn(proxy, first).subs, []);
  bus.close();
});

test("taken before the first connection is open, it waits for it; the client closed meanwhile fails it", LIMIT, async () => {
  await other.set("early.k", 1);
  const bus = new Bus(proxy.url, { subscribe: ["early.*"] });
  const mirror = await bus.watch("early.*");
  await mirror.synced();
  assert.deepEqual(mirror.keys(), ["early.k"]);
  bus.close();
  const closing = new Bus(proxy.url, { subscribe: ["early.*"] });
  const taken = closing.subscribe("early.*");
  closing.close();
  await assert.rejects(taken, Unavailable);
});

test("a URL with sub= parameters of its own fails before anything is sent, with or without the subscribe option; other parameters are kept", LIMIT, async () => {
  const attempts = proxy.attempts;
  const own = (pairs) => (e) =>
    e instanceof TypeError && e.message === `the URL has its own sub= parameters (${pairs}); name subscriptions with the subscribe option instead`;
  const options = { connectTimeout: 60000 };
  /** The connect, closed if it opens after all (the test fails then, and must not hang). */
  const connect = (url, more) => Bus.connect(url, { ...options, ...more }).then((bus) => (bus.close(), bus));
  await assert.rejects(connect(`${proxy.url}?sub=a.%3E`), own("sub=a.%3E"));
  await assert.rejects(connect(`${proxy.url}?x=1&sub=a.%3E&sub=b`, { subscribe: ["c.*"] }), own("sub=a.%3E&sub=b"));
  // A bare `sub` too: adding the token would send it as `sub=`, an empty pattern.
  assert.throws(() => new Bus(`${proxy.url}?sub`, options), own("sub"));
  assert.equal(proxy.attempts, attempts, "nothing was sent");
  await other.set("own.a", 1);
  for (const subscribe of [[], ["own.*"]]) {
    const bus = await Bus.connect(`${proxy.url}?x=sub&subs=1`, { ...options, subscribe });
    const { line } = sentOn(proxy, proxy.attempts);
    assert.match(line, /^GET \/ws\?x=sub&subs=1&token=[0-9a-f]+/);
    assert.deepEqual(subParams(line), subscribe);
    const mirror = await bus.watch("own.*");
    await mirror.synced();
    assert.deepEqual(mirror.keys(), ["own.a"]);
    bus.close();
  }
});
