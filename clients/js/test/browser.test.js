// The client in a real browser: headless Chromium loads a page that imports
// clients/js/src unbundled (test/chromium.js), talks to the real server with
// the token in ?token=, and reports back to this test over HTTP. The first
// page also names a subscription at connect (the `subscribe` option), and
// tries what must fail: a wrong token, a server that does not allow the
// page's origin, and a bad pattern named at connect. The second shows a value and the connection
// state while the server restarts.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Bus } from "../src/index.js";
import { IMPORT_MAP, pageServer } from "./chromium.js";
import { startServer } from "./server.js";

const PAGE = `${IMPORT_MAP}
<script type="module">
import { BadPattern, Bus, JSON_CODEC, NotFound, Unavailable } from "/src/index.js";
const report = (r) => fetch("/report", { method: "POST", body: JSON.stringify(r) });
const refusal = (connecting) =>
  connecting.then(
    (bus) => (bus.close(), { connected: true }),
    (e) => ({ connected: false, unavailable: e instanceof Unavailable, message: e.message }),
  );
try {
  const params = new URLSearchParams(location.search);
  const [url, token] = [params.get("bus"), params.get("token")];
  const result = {};
  for (const codec of ["ipcbus.v1.msgpack", JSON_CODEC]) {
    const bus = await Bus.connect(url, { codec, token });
    const mirror = await bus.watch("browser.>");
    await mirror.synced();
    const changed = mirror.changed();
    const rev = await bus.set("browser." + codec.split(".")[2], { ua: "chromium", n: [1, 2] });
    await changed;
    let missing;
    try { await bus.get("browser.none"); } catch (e) { missing = e instanceof NotFound; }
    result[codec] = { rev, got: await bus.get("browser." + codec.split(".")[2]), mirrored: mirror.keys(), missing };
    bus.close();
  }
  // Named at connect: the watch is the subscription the upgrade request made.
  const named = await Bus.connect(url, { token, subscribe: ["browser.>"] });
  const namedMirror = await named.watch("browser.>");
  await namedMirror.synced();
  result.named = namedMirror.keys();
  named.close();
  // A pattern the server refuses: the page's origin is allowed, so the client can read why, and gives up at once.
  const started = performance.now();
  result.badPattern = await Bus.connect(url, { token, subscribe: ["a.>.b"], connectTimeout: 30000 }).then(
    (bus) => (bus.close(), { connected: true }),
    (e) => ({ connected: false, badPattern: e instanceof BadPattern, message: e.message, ms: performance.now() - started }),
  );
  // A browser cannot tell a refusal from a server that is down: it retries until the connect timeout.
  result.wrongToken = await refusal(Bus.connect(url, { token: "wrong", connectTimeout: 300 }));
  result.otherOrigin = await refusal(Bus.connect(params.get("strict"), { token: params.get("strictToken"), failFast: true }));
  await report({ ok: true, result });
} catch (e) {
  await report({ ok: false, error: String(e && e.stack || e) });
}
</script>`;

test("the client works in headless Chromium", async () => {
  const web = await pageServer(PAGE);
  // The page comes from another origin than the bus, which must allow it;
  // `strict` does not.
  const bus = await startServer(["--allow-origin", web.origin]);
  const strict = await startServer();
  try {
    web.open({ bus: bus.url, token: bus.token, strict: strict.url, strictToken: strict.token });
    const report = await web.report(() => true);
    assert.equal(report.ok, true, report.error);
    const { wrongToken, otherOrigin, named, badPattern, ...codecs } = report.result;
    assert.deepEqual(named, ["browser.json", "browser.msgpack"]);
    assert.equal(badPattern.badPattern, true, badPattern.message);
    assert.match(badPattern.message, /refused the subscriptions named at connect/);
    assert.ok(badPattern.ms < 10000, `the bad pattern took ${badPattern.ms} ms`);
    for (const [codec, r] of Object.entries(codecs)) {
      assert.deepEqual(r.got, { ua: "chromium", n: [1, 2] }, codec);
      assert.equal(r.missing, true, codec);
      assert.ok(r.mirrored.includes("browser." + codec.split(".")[2]), codec);
    }
    // The strict server itself is fine: from Node, which sends no Origin, it lets us in.
    (await Bus.connect(strict.url, { token: strict.token })).close();
    // A browser is not told why: both are a failed connect that names the likely causes.
    for (const [what, r] of Object.entries({ wrongToken, otherOrigin })) {
      assert.equal(r.connected, false, what);
      assert.equal(r.unavailable, true, what);
      assert.match(r.message, /check the token/i, what);
      assert.match(r.message, new RegExp(`allows this origin \\(this page: ${web.origin}\\)`), what);
    }
  } finally {
    await web.close();
    await Promise.all([bus.stop(), strict.stop()]);
  }
});

// Shows page.value and the state, and reports both at every change.
const LIVE_PAGE = `${IMPORT_MAP}
<p>Bus: <span id="state"></span></p>
<p>Value: <span id="value"></span></p>
<script type="module">
import { Bus } from "/src/index.js";
const $ = (id) => document.getElementById(id);
const states = [];
const report = () => fetch("/report", { method: "POST", body: JSON.stringify({ state: $("state").textContent, value: $("value").textContent, states }) });
try {
  const params = new URLSearchParams(location.search);
  const onState = (state) => { $("state").textContent = state; states.push(state); report(); };
  const bus = await Bus.connect(params.get("bus"), { token: params.get("token"), onState });
  const mirror = await bus.watch("page.value");
  await mirror.synced();
  for (;;) {
    $("value").textContent = JSON.stringify(mirror.get("page.value") ?? null);
    report();
    await mirror.changed();
  }
} catch (e) {
  fetch("/report", { method: "POST", body: JSON.stringify({ error: String(e && e.stack || e) }) });
}
</script>`;

test("a page rides out a server restart: it shows reconnecting, then the new value", async () => {
  const web = await pageServer(LIVE_PAGE);
  const server = await startServer(["--allow-origin", web.origin]);
  const node = await Bus.connect(server.url, { token: server.token });
  try {
    await node.set("page.value", "before");
    web.open({ bus: server.url, token: server.token });
    await web.report((r) => r.error || (r.state === "open" && r.value === '"before"'));
    await server.restart();
    await web.report((r) => r.error || r.state === "reconnecting");
    await node.set("page.value", "after"); // waits for node's own reconnect
    const shown = await web.report((r) => r.error || r.value === '"after"');
    assert.equal(shown.error, undefined);
    assert.equal(shown.state, "open");
    assert.deepEqual(shown.states, ["connecting", "open", "reconnecting", "open"]);
  } finally {
    node.close();
    await web.close();
    await server.stop();
  }
});
