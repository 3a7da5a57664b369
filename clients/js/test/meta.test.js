// subscribe(pattern, callback, {meta: true}): each "val" event carries what
// the server says of the write (docs/protocol.md §4), in both codecs and
// after a reconnect; a plain subscription's events have no `meta`.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Bus } from "../src/index.js";
import { collector } from "./record.js";
import { CLIENT_ENV, startServer } from "./server.js";

for (const name of CLIENT_ENV) delete process.env[name];

const TTL_MS = 600000;
/** Long enough for any write of the test: ages are checked against it. */
const RECENT_MS = 10000;

let server;
before(async () => {
  server = await startServer();
  process.env.IPCBUS_DATA_DIR = server.dataDir;
});
after(() => server.stop());

const val = (key) => (ev) => ev.kind === "val" && ev.key === key;

for (const codec of ["ipcbus.v1.msgpack", "ipcbus.v1.json"]) {
  test(`a meta subscription sees persist, ephemeral, ttl_ms and age_ms; a plain one no meta (${codec})`, async () => {
    const writer = await Bus.connect(server.url, { codec });
    const reader = await Bus.connect(server.url, { codec });
    const p = `meta.${codec.split(".").pop()}`;
    try {
      await writer.set(`${p}.plain`, 1);
      await writer.set(`${p}.persisted`, 2, { persist: true });
      await writer.set(`${p}.ephemeral`, 3, { ephemeral: true });
      await writer.set(`${p}.ttl`, 4, { ttlMs: TTL_MS });
      const withMeta = collector();
      const plain = collector();
      await reader.subscribe(`${p}.>`, withMeta.callback, { meta: true });
      await reader.subscribe(`${p}.>`, plain.callback);
      await withMeta.when((ev) => ev.kind === "synced");
      await plain.when((ev) => ev.kind === "synced");
      const meta = (key) => withMeta.events.find(val(`${p}.${key}`)).meta;
      assert.deepEqual(Object.keys(meta("plain")), ["age_ms"]);
      assert.ok(meta("plain").age_ms >= 0 && meta("plain").age_ms < RECENT_MS);
      assert.equal(meta("persisted").persist, true);
      assert.equal(meta("persisted").ephemeral, undefined);
      assert.equal(meta("ephemeral").ephemeral, true);
      assert.equal(meta("ephemeral").persist, undefined);
      assert.ok(meta("ttl").ttl_ms > 0 && meta("ttl").ttl_ms <= TTL_MS, JSON.stringify(meta("ttl")));
      for (const ev of plain.events) assert.equal("meta" in ev, false, JSON.stringify(ev));

      // Live: a new set's options replace the old ones.
      const live = withMeta.when((ev) => val(`${p}.persisted`)(ev) && ev.value === 5);
      await writer.set(`${p}.persisted`, 5, { ttlMs: 5000 });
      const { meta: now } = await live;
      assert.equal(now.persist, undefined);
      assert.ok(now.ttl_ms > 0 && now.ttl_ms <= 5000);
      assert.ok(now.age_ms < RECENT_MS);
    } finally {
      writer.close();
      reader.close();
    }
  });
}

test("a meta subscription asks for meta again after a reconnect; the data file keeps no age", async () => {
  const bus = await Bus.connect(server.url);
  try {
    await bus.set("again.kept", 1, { persist: true });
    const seen = collector();
    const sub = await bus.subscribe("again.>", seen.callback, { meta: true });
    assert.equal(sub.meta, true);
    await seen.when((ev) => ev.kind === "synced");
    await server.restart();
    await bus.set("again.after", 2, { ttlMs: TTL_MS });
    const { meta } = await seen.when(val("again.after"));
    assert.ok(meta.ttl_ms > 0 && meta.ttl_ms <= TTL_MS);
    assert.ok(meta.age_ms < RECENT_MS);
    // A new subscription sees the restored value: persisted, of unknown age.
    const fresh = collector();
    await bus.subscribe("again.kept", fresh.callback, { meta: true });
    const restored = await fresh.when(val("again.kept"));
    assert.deepEqual(restored.meta, { persist: true });
  } finally {
    bus.close();
  }
});

test("the options may come second when there is no callback", async () => {
  const bus = await Bus.connect(server.url);
  try {
    await bus.set("iter.k", 1, { ephemeral: true });
    const sub = await bus.subscribe("iter.k", { meta: true });
    for await (const ev of sub) {
      assert.equal(ev.kind, "val");
      assert.equal(ev.meta.ephemeral, true);
      break;
    }
  } finally {
    bus.close();
  }
});
