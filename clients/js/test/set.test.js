// `set` with persist, ttlMs and ephemeral, against the real server.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Bus } from "../src/index.js";
import { CLIENT_ENV, startServer } from "./server.js";

for (const name of CLIENT_ENV) delete process.env[name];

let server;
before(async () => {
  server = await startServer();
  process.env.IPCBUS_DATA_DIR = server.dataDir;
});
after(() => server.stop());

/** A subscription callback whose events a test can wait for. */
function recorder() {
  const waiters = new Set();
  return {
    callback: (ev) => waiters.forEach((w) => w(ev)),
    /** The next event of `kind` for `key` (ask before acting); fails after `ms`. */
    next(kind, key, ms = 10000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no ${kind} for ${key} within ${ms} ms`));
        }, ms);
        const waiter = (ev) => {
          if (ev.kind !== kind || ev.key !== key) return;
          waiters.delete(waiter);
          clearTimeout(timer);
          resolve(ev);
        };
        waiters.add(waiter);
      });
    },
  };
}

test("persist survives a restart; a plain value does not", async () => {
  let bus = await Bus.connect(server.url);
  const rev = await bus.set("p.kept", { n: 1 }, { persist: true });
  await bus.set("p.lost", 1);
  bus.close();
  await server.restart();
  bus = await Bus.connect(server.url);
  assert.deepEqual(await bus.get("p.kept"), { n: 1 });
  assert.deepEqual(await bus.keys("p.*"), [{ key: "p.kept", rev }]);
  bus.close();
});

test("ttlMs deletes the key", async () => {
  const bus = await Bus.connect(server.url);
  const events = recorder();
  await bus.subscribe("ttl.key", events.callback);
  const deleted = events.next("del", "ttl.key");
  const rev = await bus.set("ttl.key", "short-lived", { ttlMs: 50 });
  assert.ok((await deleted).rev > rev);
  assert.equal(await bus.get("ttl.key", { default: null }), null);
  bus.close();
});

test("an ephemeral key goes when its connection closes", async () => {
  const watcher = await Bus.connect(server.url);
  const owner = await Bus.connect(server.url);
  const events = recorder();
  await watcher.subscribe("eph.>", events.callback);
  const set = events.next("val", "eph.online");
  await owner.set("eph.online", true, { ephemeral: true });
  await set;
  const deleted = events.next("del", "eph.online");
  owner.close();
  await deleted;
  assert.equal(await watcher.get("eph.online", { default: null }), null);
  watcher.close();
});

test("option errors", async () => {
  const bus = await Bus.connect(server.url);
  await assert.rejects(bus.set("k", 1, { persist: true, ephemeral: true }), TypeError);
  await assert.rejects(bus.set("k", 1, { ttlMs: -1 }), RangeError);
  assert.ok((await bus.set("k", 1, { ttlMs: 0.2, ifRev: 0 })) > 0); // rounds up to 1 ms
  bus.close();
});

test("a value neither codec carries as it is is a TypeError naming it; nothing is sent, the connection stays up", async () => {
  for (const codec of ["ipcbus.v1.msgpack", "ipcbus.v1.json"]) {
    const bus = await Bus.connect(server.url, { codec });
    try {
      const session = bus.session;
      const cyclic = { a: 1 };
      cyclic.self = cyclic;
      const bad = [
        [new Date(0), /a Date cannot be sent/],
        [new Set([1]), /a Set cannot be sent/],
        [new Map([[1, 2]]), /a Map cannot be sent/],
        [{ f: () => 1 }, /a function at \.f cannot be sent/],
        [[1, Symbol("s")], /a symbol at \[1\] cannot be sent/],
        [10n, /a bigint cannot be sent/],
        [undefined, /undefined cannot be sent/],
        [{ n: NaN }, /NaN at \.n is not a finite number/],
        [cyclic, /refers to itself at \.self/],
      ];
      let deep = [];
      for (let i = 0; i < 600; i++) deep = [deep]; // past MAX_DEPTH: the walk's bound
      bad.push([deep, /nests deeper than 512 levels/]);
      if (codec === "ipcbus.v1.json") bad.push([new Uint8Array([1]), /bytes need the MessagePack codec/]);
      for (const [value, says] of bad) {
        await assert.rejects(bus.set("enc.bad", value), (e) => e instanceof TypeError && says.test(e.message));
      }
      assert.equal(await bus.get("enc.bad", { default: "never written" }), "never written");
      // An undefined property is left out in both codecs, as JSON.stringify does.
      await bus.set("enc.good", { a: 1, gone: undefined, list: [1, null] });
      assert.deepEqual(await bus.get("enc.good"), { a: 1, list: [1, null] });
      assert.equal(bus.session, session);
    } finally {
      bus.close();
    }
  }
});
