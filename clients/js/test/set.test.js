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
