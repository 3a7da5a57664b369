// The client in a real browser: headless Chromium loads a page that imports
// clients/js/src unbundled (an import map resolves @msgpack/msgpack), talks
// to the real server, and reports back to this test over HTTP.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { startServer } from "./server.js";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

const PAGE = `<!doctype html>
<script type="importmap">{"imports": {"@msgpack/msgpack": "/msgpack/index.mjs"}}</script>
<script type="module">
import { Bus, JSON_CODEC, NotFound } from "/src/index.js";
const report = (r) => fetch("/done", { method: "POST", body: JSON.stringify(r) });
try {
  const url = new URLSearchParams(location.search).get("bus");
  const result = {};
  for (const codec of ["ipcbus.v1.msgpack", JSON_CODEC]) {
    const bus = await Bus.connect(url, { codec });
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
  // The page comes from another origin than the bus, which must allow it.
  const bus = await startServer(["--allow-origin", `http://127.0.0.1:${web.address().port}`]);
  const page = `http://127.0.0.1:${web.address().port}/?bus=${encodeURIComponent(bus.url)}`;
  const profile = mkdtempSync(join(tmpdir(), "ipcbus-chromium-"));
  const chromium = spawn(CHROMIUM, [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    `--user-data-dir=${profile}`, page,
  ], { stdio: "ignore" });
  try {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error("the page did not report in 60 s")), 60000);
    });
    const report = await Promise.race([reported, timeout]).finally(() => clearTimeout(timer));
    assert.equal(report.ok, true, report.error);
    for (const [codec, r] of Object.entries(report.result)) {
      assert.deepEqual(r.got, { ua: "chromium", n: [1, 2] }, codec);
      assert.equal(r.missing, true, codec);
      assert.ok(r.mirrored.includes("browser." + codec.split(".")[2]), codec);
    }
  } finally {
    chromium.kill("SIGKILL");
    web.close();
    await bus.stop();
    rmSync(profile, { recursive: true, force: true });
  }
});
