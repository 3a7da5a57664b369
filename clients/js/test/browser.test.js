// The client in a real browser: headless Chromium loads a page that imports
// clients/js/src unbundled (an import map resolves @msgpack/msgpack), talks
// to the real server with the token in ?token=, and reports back to this
// test over HTTP. The page also tries what must fail: a wrong token, and a
// server that does not allow the page's origin.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { Bus } from "../src/index.js";
import { startServer } from "./server.js";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

const PAGE = `<!doctype html>
<script type="importmap">{"imports": {"@msgpack/msgpack": "/msgpack/index.mjs"}}</script>
<script type="module">
import { Bus, JSON_CODEC, NotFound, Unavailable } from "/src/index.js";
const report = (r) => fetch("/done", { method: "POST", body: JSON.stringify(r) });
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
  result.wrongToken = await refusal(Bus.connect(url, { token: "wrong" }));
  result.otherOrigin = await refusal(Bus.connect(params.get("strict"), { token: params.get("strictToken") }));
  await report({ ok: true, result });
} catch (e) {
  await report({ ok: false, error: String(e && e.stack || e) });
}
</script>`;

const TYPES = { ".js": "text/javascript", ".mjs": "text/javascript" };

test("the client works in headless Chromium", async () => {
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM)`);
  let finish;
  const reported = new Promise((resolve) => (finish = resolve));
  const web = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    if (path === "/done") {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        res.end();
        finish(JSON.parse(body));
      });
      return;
    }
    const file =
      path === "/" ? null
      : path.startsWith("/src/") ? join(ROOT, path)
      : path.startsWith("/msgpack/") ? join(ROOT, "node_modules/@msgpack/msgpack/dist.esm", path.slice(9))
      : undefined;
    if (file === null) return res.end(PAGE);
    if (!file || !existsSync(file)) return res.writeHead(404).end();
    res.writeHead(200, { "Content-Type": TYPES[extname(file)] ?? "application/octet-stream" });
    res.end(readFileSync(file));
  });
  await new Promise((resolve) => web.listen(0, "127.0.0.1", resolve));
  // The page comes from another origin than the bus, which must allow it;
  // `strict` does not.
  const bus = await startServer(["--allow-origin", `http://127.0.0.1:${web.address().port}`]);
  const strict = await startServer();
  const query = new URLSearchParams({ bus: bus.url, token: bus.token, strict: strict.url, strictToken: strict.token });
  const page = `http://127.0.0.1:${web.address().port}/?${query}`;
  const profile = mkdtempSync(join(tmpdir(), "ipcbus-chromium-"));
  const chromium = spawn(CHROMIUM, [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    `--user-data-dir=${profile}`, page,
  ], { stdio: "ignore", detached: true }); // its own process group, to end its helpers too
  const exited = new Promise((resolve) => chromium.on("exit", resolve));
  try {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error("the page did not report in 60 s")), 60000);
    });
    const report = await Promise.race([reported, timeout]).finally(() => clearTimeout(timer));
    assert.equal(report.ok, true, report.error);
    const { wrongToken, otherOrigin, ...codecs } = report.result;
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
      assert.match(r.message, new RegExp(`allows this origin \\(this page: http://127.0.0.1:${web.address().port}\\)`), what);
    }
  } finally {
    process.kill(-chromium.pid, "SIGKILL");
    await exited;
    web.close();
    await Promise.all([bus.stop(), strict.stop()]);
    rmSync(profile, { recursive: true, force: true, maxRetries: 10 });
  }
});
