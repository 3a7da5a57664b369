// The reconnect contract (docs/clients.md) against the real server: restarts
// of the server, and connections cut by a proxy (test/proxy.js). Every wait
// is for an event (a state, a proxy attempt, a reply); the per-test timeout
// turns a wait that never ends into a failure.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Bus, Timeout, Unauthorized, Unavailable } from "../src/index.js";
import { startProxy } from "./proxy.js";
import { states } from "./record.js";
import { CLIENT_ENV, freePort, startServer, tempDir } from "./server.js";

for (const name of CLIENT_ENV) delete process.env[name];
process.env.XDG_DATA_HOME = join(tmpdir(), "ipcbus-js-no-such-dir"); // no real token file

/** A test that waits for more than this has hung. */
const LIMIT = { timeout: 20000 };

let server;
let proxy;
let other; // a client straight to the server, never cut
before(async () => {
  server = await startServer();
  process.env.IPCBUS_DATA_DIR = server.dataDir;
  proxy = await startProxy(Number(new URL(server.url).port));
  other = await Bus.connect(server.url);
});
after(async () => {
  other.close();
  await proxy.close();
  await server.stop();
});

/** Cuts the bus's connection and keeps it down until `proxy.resume()`. */
async function outage(recorded, n = 1) {
  proxy.pause();
  proxy.cut();
  await recorded.reached("reconnecting", n);
}

test("states are reported in order across a server restart", LIMIT, async () => {
  const recorded = states();
  const bus = new Bus(server.url, { onState: recorded.onState });
  const events = [];
  bus.addEventListener("state", (e) => events.push([e.detail.state, e.detail.reason]));
  await recorded.reached("open");
  await server.restart();
  await recorded.reached("open", 2);
  assert.equal(await bus.set("restart.after", 1) > 0, true);
  bus.close();
  assert.deepEqual(recorded.seen.map(([s]) => s), ["connecting", "open", "reconnecting", "open", "closed"]);
  assert.deepEqual(events, recorded.seen);
  assert.match(recorded.seen[2][1], /connection to .* lost \(1001 server shutting down\)/);
  assert.equal(bus.stateReason, "closed by the client");
  await other.get("restart.after"); // the other client is back too
});

test("a for await subscriber sees each key's final state after an outage and a restart", LIMIT, async () => {
  for (const key of ["same", "changed", "deleted"]) await other.set(`fin.${key}`, key, { persist: true });
  await other.set("fin.plain", "gone after the restart");
  const recorded = states();
  const bus = await Bus.connect(proxy.url, { onState: recorded.onState });
  const sub = await bus.subscribe("fin.*");
  const seen = [];
  const state = new Map();
  let synced;
  const replayed = new Promise((resolve) => (synced = resolve));
  const done = () => state.get("fin.changed") === "new" && state.get("fin.added") === "new" && !state.has("fin.deleted") && !state.has("fin.plain");
  const reading = (async () => {
    for await (const ev of sub) {
      seen.push([ev.kind, ev.key, ev.kind === "del" ? `rev ${ev.rev}` : ev.value]);
      if (ev.kind === "val") state.set(ev.key, ev.value);
      if (ev.kind === "del") state.delete(ev.key);
      if (ev.kind === "synced") synced();
      // The dels come at the end of the replay after the reconnect: all of it is in.
      if (ev.kind !== "synced" && done()) break;
    }
  })();
  await replayed;
  await outage(recorded);
  await server.restart();
  await other.set("fin.changed", "new");
  await other.delete("fin.deleted");
  await other.set("fin.added", "new");
  proxy.resume();
  await reading;
  const replay = [["val", "fin.changed", "changed"], ["val", "fin.deleted", "deleted"], ["val", "fin.plain", "gone after the restart"], ["val", "fin.same", "same"]];
  assert.deepEqual(seen.slice(0, 4).sort(), replay);
  assert.deepEqual(seen[4], ["synced", undefined, undefined]);
  // Only what changed, once: no "synced" again, nothing for fin.same.
  assert.deepEqual(seen.slice(5).sort(), [
    ["del", "fin.deleted", "rev 0"],
    ["del", "fin.plain", "rev 0"],
    ["val", "fin.added", "new"],
    ["val", "fin.changed", "new"],
  ]);
  assert.equal(state.get("fin.same"), "same");
  assert.equal(sub.closed, true);
  bus.close();
});

test("a publisher loop keeps running across a restart", LIMIT, async () => {
  const recorded = states();
  const bus = await Bus.connect(server.url, { onState: recorded.onState });
  let stop = false;
  let lastAcked;
  let uncertain = 0;
  let waitedAndLanded;
  const landed = new Promise((resolve) => (waitedAndLanded = resolve));
  // A set made on a connection that was gone (the state may not say so yet:
  // the socket closes first) waits, and lands after the next "open".
  const opens = () => recorded.seen.filter(([s]) => s === "open").length;
  const loop = (async () => {
    for (let i = 0; !stop; i++) {
      const opened = opens();
      try {
        await bus.set("pub.n", i);
      } catch (e) {
        if (!(e instanceof Unavailable && e.maybeApplied)) throw e;
        uncertain += 1;
        continue;
      }
      lastAcked = i;
      if (opens() > opened) waitedAndLanded();
    }
  })();
  await bus.set("pub.started", true); // the loop runs alongside
  await server.restart();
  await landed; // a set made while the bus was down waited, and landed
  stop = true;
  await loop;
  assert.equal(await other.get("pub.n"), lastAcked);
  assert.ok(uncertain <= 1, `${uncertain} sets were in flight when the connection dropped`);
  assert.deepEqual(recorded.seen.map(([s]) => s), ["connecting", "open", "reconnecting", "open"]);
  bus.close();
});

test("a call made during an outage waits for the connection, up to its timeout", LIMIT, async () => {
  await other.set("wait.k", "v");
  const recorded = states();
  const bus = await Bus.connect(proxy.url, { onState: recorded.onState, timeout: 5000 });
  await outage(recorded);
  const attempts = proxy.attempts;
  const waiting = bus.get("wait.k");
  await proxy.attempted(attempts + 1); // the bus is retrying, and the call waits
  proxy.resume();
  assert.equal(await waiting, "v");

  bus.close();

  const quickStates = states();
  const quick = await Bus.connect(proxy.url, { onState: quickStates.onState, timeout: 300 });
  await outage(quickStates);
  await assert.rejects(quick.get("wait.k"), (e) => e instanceof Unavailable && /not connected to .* within 300 ms/.test(e.message));
  proxy.resume();
  await quickStates.reached("open", 2);
  assert.equal(await quick.get("wait.k"), "v");
  quick.close();
});

test("a write in flight when the connection drops may have been applied; a read is sent again", LIMIT, async () => {
  await other.set("flight.read", "r");
  const recorded = states();
  const bus = await Bus.connect(proxy.url, { onState: recorded.onState });
  const write = bus.set("flight.write", 1);
  const removal = bus.delete("flight.read.none");
  const read = bus.get("flight.read");
  proxy.cut(); // in the same turn: no reply can have come
  const uncertain = (e) => e instanceof Unavailable && e.maybeApplied === true && /may have been applied/.test(e.message) && /ifRev/.test(e.message);
  await assert.rejects(write, uncertain);
  await assert.rejects(removal, uncertain);
  assert.equal(await read, "r");
  await recorded.reached("open", 2);
  bus.close();
});

test("the first connect waits for a server that is not up yet", LIMIT, async () => {
  const port = await freePort();
  const dataDir = tempDir();
  // The server keeps a token file it finds: the client can read it before the server is up.
  writeFileSync(join(dataDir, "token"), `${randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
  const early = await startProxy(port);
  process.env.IPCBUS_DATA_DIR = dataDir; // the token file appears when the server starts
  try {
    const connecting = Bus.connect(early.url, { connectTimeout: 15000 });
    await early.attempted(2);
    const late = await startServer([], { port, dataDir });
    const bus = await connecting;
    assert.ok((await bus.set("late.k", 1)) > 0);
    bus.close();
    await late.stop();
  } finally {
    process.env.IPCBUS_DATA_DIR = server.dataDir;
    await early.close();
  }
});

test("a first connect gives up: failFast, a refusal, the connect timeout", LIMIT, async () => {
  const nothing = `ws://127.0.0.1:${await freePort()}/ws`;
  // A wait of a minute would fail this test: these fail at once.
  await assert.rejects(Bus.connect(nothing, { failFast: true, connectTimeout: 60000 }), Unavailable);
  await assert.rejects(Bus.connect(server.url, { token: "wrong", connectTimeout: 60000 }), Unauthorized);
  const recorded = states();
  await assert.rejects(Bus.connect(nothing, { connectTimeout: 300, onState: recorded.onState }), (e) => e instanceof Unavailable && /within 300 ms/.test(e.message));
  assert.deepEqual(recorded.seen.map(([s]) => s), ["connecting", "closed"]);
});

test("a URL that cannot be parsed rejects the connect, and nothing else breaks", LIMIT, async () => {
  // The failure's diagnosis parses the URL too: it must not throw past the connect.
  for (const bad of ["ws://[bad", "ws://[bad/ws?sub=a"]) {
    await assert.rejects(Bus.connect(bad, { connectTimeout: 300 }), (e) => e instanceof Unavailable && /within 300 ms/.test(e.message));
  }
});

test("ephemeral keys are set again after a reconnect, before the bus is open", LIMIT, async () => {
  const recorded = states();
  const bus = await Bus.connect(proxy.url, { onState: recorded.onState });
  await bus.set("eph.mine", { up: true }, { ephemeral: true });
  await bus.set("eph.ended", 1, { ephemeral: true });
  await bus.delete("eph.ended"); // a delete ends the re-setting
  const mirror = await other.watch("eph.mine");
  await mirror.synced();
  const gone = mirror.changed();
  await outage(recorded);
  await gone; // the server ended the old connection's key
  assert.equal(mirror.has("eph.mine"), false);
  proxy.resume();
  await recorded.reached("open", 2);
  assert.deepEqual(await other.get("eph.mine"), { up: true });
  assert.equal(await other.get("eph.ended", { default: "absent" }), "absent");
  mirror.close();
  bus.close();
});

test("a watch is correct again after a reconnect, and changed() keeps firing", LIMIT, async () => {
  await other.set("w.kept", 1);
  await other.set("w.gone", 1);
  const recorded = states();
  const bus = await Bus.connect(proxy.url, { onState: recorded.onState });
  const mirror = await bus.watch("w.*");
  await mirror.synced();
  await outage(recorded);
  await other.delete("w.gone");
  await other.set("w.new", 2);
  proxy.resume();
  while (mirror.has("w.gone") || !mirror.has("w.new")) await mirror.changed();
  await recorded.reached("open", 2);
  assert.deepEqual(mirror.keys(), ["w.kept", "w.new"]);
  const live = mirror.changed();
  await other.set("w.kept", 3);
  await live;
  assert.equal(mirror.get("w.kept"), 3);
  bus.close();
});

test("closing ends subscriptions and fails waiting calls", LIMIT, async () => {
  const recorded = states();
  const bus = await Bus.connect(proxy.url, { onState: recorded.onState });
  const sub = await bus.subscribe("close.>");
  const ended = (async () => {
    for await (const ev of sub) void ev;
  })();
  await outage(recorded);
  const waiting = bus.get("close.k");
  bus.close();
  await assert.rejects(waiting, (e) => e instanceof Unavailable && /^closed/.test(e.message));
  await ended;
  await assert.rejects(bus.get("close.k"), Unavailable);
  proxy.resume();
  assert.deepEqual(recorded.seen.map(([s]) => s), ["connecting", "open", "reconnecting", "closed"]);
});

test("with reconnect off, a lost connection closes the client", LIMIT, async () => {
  const recorded = states();
  const bus = await Bus.connect(proxy.url, { onState: recorded.onState, reconnect: false });
  const sub = await bus.subscribe("off.>");
  const ended = (async () => {
    for await (const ev of sub) void ev;
  })();
  const read = bus.get("off.k");
  proxy.cut();
  await assert.rejects(read, (e) => e instanceof Unavailable && /reconnect is off/.test(e.message));
  await ended;
  await recorded.reached("closed");
  assert.deepEqual(recorded.seen.map(([s]) => s), ["connecting", "open", "closed"]);
  assert.match(bus.stateReason, /lost/);
  await assert.rejects(bus.get("off.k"), Unavailable);
});

test("an ephemeral set made while the connection is down is written once, when it is sent", LIMIT, async (t) => {
  const events = [];
  let ended;
  const end = new Promise((resolve) => (ended = resolve));
  const watcher = await other.subscribe("ephw.*", (ev) => {
    if (ev.kind === "val") events.push(ev.key);
    if (ev.key === "ephw.end") ended();
  });
  t.after(() => watcher.close());
  const recorded = states();
  const bus = await Bus.connect(proxy.url, { onState: recorded.onState });
  t.after(() => bus.close());
  await outage(recorded);
  const written = bus.set("ephw.once", "v", { ephemeral: true });
  proxy.resume();
  assert.ok((await written) > 0);
  await other.set("ephw.end", 1);
  await end; // every event before it is in
  assert.deepEqual(events, ["ephw.once", "ephw.end"]);
});

test("an ephemeral set that gave up waiting for the connection is not written later", LIMIT, async (t) => {
  const recorded = states();
  const bus = await Bus.connect(proxy.url, { onState: recorded.onState, timeout: 300 });
  t.after(() => bus.close());
  await outage(recorded);
  await assert.rejects(bus.set("ephw.never", "v", { ephemeral: true }), (e) => e instanceof Unavailable && !e.maybeApplied && /not connected/.test(e.message));
  proxy.resume();
  await recorded.reached("open", 2);
  assert.equal(await other.get("ephw.never", { default: "absent" }), "absent");
});

test("a write made after the socket closed, before the client noticed, waits for the next connection", LIMIT, async (t) => {
  const recorded = states();
  const bus = await Bus.connect(proxy.url, { onState: recorded.onState });
  t.after(() => bus.close());
  let late;
  // The socket's own close listeners run before the client has handled the close.
  bus._conn.link.ws.addEventListener("close", () => (late = bus.set("closing.k", "after")));
  proxy.cut();
  await recorded.reached("reconnecting");
  assert.ok((await late) > 0, "the write was not cut off: it was never sent on the dead socket");
  assert.equal(await other.get("closing.k"), "after");
});

test("closing while ephemeral keys are set again ends that connection at once", LIMIT, async (t) => {
  const recorded = states();
  const bus = await Bus.connect(proxy.url, { onState: recorded.onState, timeout: 60000 });
  t.after(() => bus.close());
  await bus.set("deaf.k", 1, { ephemeral: true });
  await outage(recorded);
  proxy.deaf = true;
  t.after(() => (proxy.deaf = false));
  const from = proxy.swallowed.length;
  proxy.resume();
  await proxy.swallowedFrame(2, from); // the re-set, which gets no reply
  bus.close();
  // Its Close frame: the socket is not left open (nor a timer running) until the re-set times out.
  await proxy.swallowedFrame(8, from);
  assert.equal(bus.state, "closed");
});

test("a subscription whose first replay is cut off still passes on synced, once", LIMIT, async (t) => {
  await other.set("half.a", 1);
  await other.set("half.b", 2);
  const recorded = states();
  const bus = await Bus.connect(proxy.url, { onState: recorded.onState });
  t.after(() => bus.close());
  const seen = [];
  let synced;
  let live;
  const done = new Promise((resolve) => (synced = resolve));
  const liveSeen = new Promise((resolve) => (live = resolve));
  await bus.subscribe("half.*", (ev) => {
    seen.push(ev.kind === "synced" ? "synced" : `${ev.kind} ${ev.key}`);
    // The connection is lost in the middle of the replay: nothing after this event is read.
    if (seen.length === 1) bus._conn.link.ws.close();
    if (ev.kind === "synced") synced();
    if (ev.key === "half.c") live();
  });
  await done;
  await recorded.reached("open", 2);
  await other.set("half.c", 3); // a live change, after the replay
  await liveSeen;
  assert.deepEqual(seen.filter((s) => s === "synced"), ["synced"]);
  assert.deepEqual(seen.slice(0, 3).sort(), ["synced", "val half.a", "val half.b"].sort());
});

test("a connection on which nothing arrives is probed, then taken for dead and replaced", LIMIT, async (t) => {
  const recorded = states();
  const bus = await Bus.connect(proxy.url, { onState: recorded.onState, idleTimeout: 300, timeout: 300 });
  t.after(() => bus.close());
  proxy.muted = true; // the network went away: nothing is closed, nothing arrives
  t.after(() => (proxy.muted = false));
  await recorded.reached("reconnecting");
  assert.match(bus.stateReason, /taken for dead/);
  proxy.muted = false;
  await recorded.reached("open", 2);
  assert.deepEqual(await bus.keys("idle.none"), []);
});

test("a reply after its call timed out is dropped, and a late sub is undone", LIMIT, async (t) => {
  // With --max-subs 1, a subscription left on the server leaves no room for another.
  const own = await startServer(["--max-subs", "1"]);
  t.after(() => own.stop());
  const slow = await startProxy(Number(new URL(own.url).port));
  t.after(() => slow.close());
  const direct = await Bus.connect(own.url, { token: own.token });
  t.after(() => direct.close());
  const bus = await Bus.connect(slow.url, { token: own.token, timeout: 300 });
  t.after(() => bus.close());
  await direct.set("t.a", 1);
  const rev = await direct.set("t.b", 2);
  const session = bus.session;
  slow.hold(); // the replies reach the proxy, not the client
  await assert.rejects(bus.get("t.a"), (e) => e instanceof Timeout && /no reply to get/.test(e.message) && !e.maybeApplied);
  // The same value again: it is applied; its reply is late.
  await assert.rejects(bus.set("t.b", 2, { ifRev: rev }), (e) => e instanceof Timeout && e.maybeApplied === true && /may have been applied/.test(e.message));
  const late = [];
  await assert.rejects(bus.subscribe("t.*", (ev) => late.push(ev)), Timeout);
  slow.unhold(); // the late replies come first, then the next call's
  assert.equal(await bus.get("t.b"), 2);
  assert.equal(bus.session, session);
  assert.equal(bus.state, "open");
  const seen = [];
  let replayed;
  let live;
  const synced = new Promise((resolve) => (replayed = resolve));
  const changed = new Promise((resolve) => (live = resolve));
  await bus.subscribe("t.*", (ev) => {
    seen.push(ev.kind === "synced" ? "synced" : `${ev.kind} ${ev.key} ${ev.value}`);
    if (ev.kind === "synced") replayed();
    if (ev.key === "t.c") live();
  }); // there is room for it: the late one was undone
  await synced;
  await direct.set("t.c", 3);
  await changed;
  assert.deepEqual(seen.slice(0, 3).sort(), ["synced", "val t.a 1", "val t.b 2"]);
  assert.deepEqual(seen.slice(3), ["val t.c 3"]);
  assert.deepEqual(late, []);
});
