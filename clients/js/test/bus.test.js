// The JavaScript client against the real server, in both codecs. The
// clients find the token as on a real installation: $IPCBUS_DATA_DIR points
// at the server's data dir (auth.test.js tests the other ways).
import assert from "node:assert/strict";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Bus, ITERATOR_CAPACITY, JSON_CODEC, MSGPACK, NotFound, RevMismatch, BadKey, BadPattern, Unavailable } from "../src/index.js";
import { CLIENT_ENV, startServer } from "./server.js";

for (const name of CLIENT_ENV) delete process.env[name];
process.env.XDG_DATA_HOME = join(tmpdir(), "ipcbus-js-no-such-dir"); // no real token file

for (const codec of [MSGPACK, JSON_CODEC]) {
  describe(`with ${codec}`, () => {
    let server;
    let bus;
    before(async () => {
      server = await startServer();
      process.env.IPCBUS_DATA_DIR = server.dataDir;
      bus = await Bus.connect(server.url, { codec });
    });
    after(async () => {
      bus.close();
      delete process.env.IPCBUS_DATA_DIR;
      await server.stop();
    });

    test("values round-trip", async () => {
      assert.equal(bus.codec, codec);
      const value = { temp: 21.5, tags: ["a", "b"], none: null, ok: true };
      const rev = await bus.set("t.one", value);
      assert.deepEqual(await bus.get("t.one"), value);
      await bus.set("t.two", "text");
      assert.deepEqual(await bus.keys("t.*"), [
        { key: "t.one", rev },
        { key: "t.two", rev: rev + 1 },
      ]);
      assert.ok((await bus.delete("t.one")) > rev);
      assert.equal(await bus.get("t.one", { default: "gone" }), "gone");
    });

    test("errors are typed", async () => {
      await assert.rejects(bus.get("absent"), NotFound);
      const rev = await bus.set("cas", 1, { ifRev: 0 });
      await assert.rejects(bus.set("cas", 2, { ifRev: 0 }), (e) => e instanceof RevMismatch && e.rev === rev);
      await assert.rejects(bus.set("bad key", 1), BadKey);
      await assert.rejects(bus.keys("a.>.b"), BadPattern);
    });

    test("requests are pipelined", async () => {
      const revs = await Promise.all(Array.from({ length: 500 }, (_, i) => bus.set(`p.${i % 10}`, i)));
      assert.equal(new Set(revs).size, 500);
    });

    test("subscribe with a callback: replay, synced, live", async () => {
      await bus.set("s.one", 1);
      const events = [];
      let done;
      const finished = new Promise((resolve) => (done = resolve));
      const sub = await bus.subscribe("s.*", (ev) => {
        events.push([ev.kind, ev.key, ev.value]);
        if (ev.kind === "del") done();
      });
      await bus.set("s.two", 2);
      await bus.delete("s.one");
      await finished;
      assert.deepEqual(events, [
        ["val", "s.one", 1],
        ["synced", undefined, undefined],
        ["val", "s.two", 2],
        ["del", "s.one", undefined],
      ]);
      sub.close();
    });

    test("subscribe as an async iterator", async () => {
      const sub = await bus.subscribe("it.key");
      await bus.set("it.key", "a");
      const seen = [];
      for await (const ev of sub) {
        seen.push(ev.kind);
        if (ev.kind === "val") break; // break closes the subscription
      }
      assert.deepEqual(seen, ["synced", "val"]);
      assert.equal(sub.closed, true);
    });

    test("MessagePack map keys JavaScript cannot hold arrive as text", async () => {
      const put = await fetch(`${server.http}/v1/keys/odd.keys`, {
        method: "PUT",
        headers: { "Content-Type": "application/msgpack", Authorization: `Bearer ${server.token}` },
        body: new Uint8Array([0x82, 0xc0, 0x01, 0x91, 0x02, 0x03]), // {nil: 1, [2]: 3}
      });
      assert.equal(put.status, 200);
      assert.deepEqual(await bus.get("odd.keys"), { null: 1, "[2]": 3 });
    });

    test("closing a watch wakes its waiters", async () => {
      const mirror = await bus.watch("closing.>");
      await mirror.synced();
      const changed = mirror.changed();
      mirror.close();
      await changed;
    });

    test("an unread iterator keeps the newest event per key past its capacity", async () => {
      const sub = await bus.subscribe("flood.>");
      const writes = [];
      for (let i = 0; i < ITERATOR_CAPACITY + 500; i++) writes.push(bus.set(`flood.k${i % 3}`, i));
      await Promise.all(writes);
      await bus.set("flood.end", true);
      const last = {};
      let count = 0;
      for await (const ev of sub) {
        count += 1;
        if (ev.kind === "val") last[ev.key] = ev.value;
        if (ev.key === "flood.end") break;
      }
      assert.ok(count <= ITERATOR_CAPACITY + 2, `${count} events were held`);
      const n = ITERATOR_CAPACITY + 500;
      for (let k = 0; k < 3; k++) assert.equal(last[`flood.k${k}`], n - 1 - ((n - 1 - k) % 3), `flood.k${k}`);
      assert.ok(sub.skipped > 0);
    });

    test("watch is a local mirror", async () => {
      await bus.set("m.a", { x: 1 });
      const other = await Bus.connect(server.url);
      const mirror = await bus.watch("m.>");
      await mirror.synced();
      assert.deepEqual(mirror.get("m.a"), { x: 1 });
      let changed = mirror.changed();
      await other.set("m.b", [1, 2]);
      await changed;
      assert.deepEqual(mirror.get("m.b"), [1, 2]);
      changed = mirror.changed();
      await other.delete("m.a");
      await changed;
      assert.deepEqual(mirror.keys(), ["m.b"]);
      mirror.close();
      other.close();
    });
  });
}

test("connecting to nothing is Unavailable", async () => {
  await assert.rejects(Bus.connect("ws://127.0.0.1:1/ws", { failFast: true }), Unavailable);
});
