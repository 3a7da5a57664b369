// The server's limits from its hello: a request over them is TooLarge before
// anything is sent and the connection stays up; a server that announced none
// (the hello rewritten by test/proxy.js) closes with 1009, which is TooLarge
// too, and the client reconnects.
import assert from "node:assert/strict";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Bus, JSON_CODEC, MSGPACK, TooLarge } from "../src/index.js";
import { startProxy } from "./proxy.js";
import { CLIENT_ENV, startServer } from "./server.js";

for (const name of CLIENT_ENV) delete process.env[name];
process.env.XDG_DATA_HOME = join(tmpdir(), "ipcbus-js-no-such-dir"); // no real token file

/** A test that waits for more than this has hung. */
const LIMIT = { timeout: 20000 };

let server;
let older;
before(async () => {
  server = await startServer(["--max-value-bytes", "1000", "--max-frame-bytes", "4000"]);
  process.env.IPCBUS_DATA_DIR = server.dataDir;
  older = await startProxy(Number(new URL(server.url).port), { olderServer: true });
});
after(async () => {
  await older.close();
  await server.stop();
});

for (const codec of [MSGPACK, JSON_CODEC]) {
  test(`${codec}: too large is refused before sending; the connection stays up`, LIMIT, async () => {
    const seen = [];
    const bus = await Bus.connect(server.url, { codec, onState: (state) => seen.push(state) });
    await assert.rejects(bus.set("big.value", "x".repeat(1001)), (e) => e instanceof TooLarge && /value of 100\d bytes exceeds max_value_bytes \(1000\)/.test(e.message));
    // A float is 9 bytes as MessagePack, 3 characters as JSON: the limit is the server's measure.
    await assert.rejects(bus.set("big.floats", Array(120).fill(1.5)), TooLarge);
    await assert.rejects(bus.keys("k".repeat(5000)), (e) => e instanceof TooLarge && /exceeds max_frame_bytes \(4000\)/.test(e.message));
    assert.ok((await bus.set("big.value", "x".repeat(990))) > 0);
    assert.equal(await bus.get("big.value"), "x".repeat(990));
    assert.deepEqual(seen, ["connecting", "open"]);
    bus.close();
  });

  test(`${codec}: a 1009 close from a server that announced no limits is TooLarge, then the client reconnects`, LIMIT, async () => {
    const seen = [];
    let reopened;
    const back = new Promise((resolve) => (reopened = resolve));
    const onState = (state) => {
      seen.push(state);
      if (seen.filter((s) => s === "open").length === 2) reopened();
    };
    const bus = await Bus.connect(older.url, { codec, onState });
    await assert.rejects(bus.set("big.frame", "x".repeat(5000)), (e) => e instanceof TooLarge && /frame too big.*1009/.test(e.message));
    await back;
    assert.ok((await bus.set("big.after", 1)) > 0);
    assert.deepEqual(seen, ["connecting", "open", "reconnecting", "open"]);
    bus.close();
  });
}
