// The dashboard (/ui/, served by the binary) in a real browser: playwright-core
// drives Debian's Chromium against the real server. The page is opened from
// the URL the server logs; Node clients set keys, watch the page's writes and
// write conflicting values. Screenshots go to target/screenshots/.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createInterface } from "node:readline";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { Bus, NotFound } from "../src/index.js";
import { CHROMIUM } from "./chromium.js";
import { startServer } from "./server.js";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const SHOTS = `${REPO}target/screenshots/`;
const BIN = process.env.IPCBUS_BIN ?? `${REPO}target/debug/ipcbus`;
/** How long a test waits for the page to show something before it fails. */
const WAIT_MS = 15000;
const XSS = "<img src=x onerror=alert(1)>";

/** The dashboard URL from the server's log. */
function loggedUrl(server) {
  const match = /dashboard: (\S+)/.exec(server.log());
  assert.ok(match, `no dashboard URL in the log:\n${server.log()}`);
  return match[1];
}

/** A Python client (clients/python) subscribed to `key`: `next(match)` resolves to the next value `match` accepts. */
async function pythonSubscriber(server, key) {
  const script = `
import json, sys
from ipcbus import Bus
bus = Bus()
def on(ev):
    print(json.dumps({"kind": ev.kind, "value": getattr(ev, "value", None)}), flush=True)
bus.subscribe(${JSON.stringify(key)}, on)
sys.stdin.read()
`;
  const env = { ...process.env, PYTHONPATH: `${REPO}clients/python`, IPCBUS_URL: server.url, IPCBUS_TOKEN: server.token };
  const child = spawn("python3", ["-u", "-c", script], { env, stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout });
  const seen = [];
  let waiters = [];
  lines.on("line", (line) => {
    seen.push(JSON.parse(line));
    waiters = waiters.filter((w) => !w());
  });
  const next = (match) =>
    new Promise((resolve) => {
      const check = () => {
        const found = seen.find(match);
        if (found) resolve(found.value);
        return found !== undefined;
      };
      if (!check()) waiters.push(check);
    });
  await next((ev) => ev.kind === "synced");
  return { next, close: () => child.stdin.end() };
}

const row = (page, key) => page.locator(`.row[data-key="${key}"]`);

/** Resolves to the next value `sub` delivers for `key` that `match` accepts. */
function nextValue(events, key, match) {
  return new Promise((resolve) => {
    events.push((ev) => {
      if (ev.kind === "val" && ev.key === key && match(ev.value)) {
        resolve(ev.value);
        return true;
      }
      return false;
    });
  });
}

test("the dashboard in Chromium: browse, live changes, edit, conflict, delete, XSS, restart", async () => {
  mkdirSync(SHOTS, { recursive: true });
  const server = await startServer();
  const node = await Bus.connect(server.url, { token: server.token });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  const waiting = [];
  const sub = await node.subscribe("ui.>", (ev) => waiting.splice(0, waiting.length, ...waiting.filter((w) => !w(ev))));
  try {
    // Set before the page opens: listed from the replay.
    await node.set("ui.before.a", { n: 1, list: [1, 2] });
    await node.set("ui.before.b", "text");
    await node.set("ui.xss", XSS);
    await node.set("ui.bin", new Uint8Array([1, 2, 255]));
    await node.set("ui.edit", { v: 1 });
    await node.set("kodi.player.state", { state: "playing", file: "/media/clip.mp4", speed: 1 });
    await node.set("kodi.player.item", { title: "Big Buck Bunny", mediatype: "movie", year: 2008, duration: 596, file: "/media/clip.mp4", video: { width: 1920, height: 1080, codec: "h264" } });

    const page = await browser.newPage({ viewport: { width: 1280, height: 1040 } });
    const dialogs = [];
    page.on("dialog", (d) => (dialogs.push(d.message()), d.dismiss()));
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    page.setDefaultTimeout(WAIT_MS);

    const url = loggedUrl(server);
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/ui\/#token=[0-9a-f]+$/);
    await page.goto(url);
    await page.locator('#state[data-state="open"]').waitFor();
    await row(page, "ui.before.a").waitFor();
    // The token left the address bar and lives in this tab's storage only.
    assert.equal(new URL(page.url()).hash, "");
    assert.equal(await page.evaluate(() => sessionStorage.getItem("ipcbus.token")), server.token);
    assert.equal(await page.evaluate(() => localStorage.length), 0);

    // Values as text: the XSS value shows as its characters, makes no element, opens no dialog.
    assert.equal(await row(page, "ui.xss").locator(".value").textContent(), JSON.stringify(XSS));
    assert.equal(await page.locator("#rows img").count(), 0);
    assert.equal(await row(page, "ui.bin").locator(".value").textContent(), "<bytes 01 02 ff>");
    // The tree: ui holds 5 keys, ui.before 2.
    assert.equal(await page.locator('.row[data-path="ui"] .count').textContent(), "5");
    assert.equal(await page.locator('.row[data-path="ui.before"] .count').textContent(), "2");
    await page.locator("#nowplaying .np-title").getByText("Big Buck Bunny").waitFor();

    // A key set by another client appears, highlighted.
    await node.set("ui.live.b", 2);
    await row(page, "ui.live.b").waitFor();
    assert.equal(await row(page, "ui.live.b").locator(".value").textContent(), "2");

    // An edit on the page reaches another client's subscription.
    await row(page, "ui.edit").click();
    await page.locator("#detail pre.value").getByText('"v": 1').waitFor();
    // The server panel has its first figures (docs/dashboard.png shows it too).
    await page.locator('#figures dd[data-figure="connections"]').getByText(/^[1-9]/).waitFor();
    await page.screenshot({ path: `${SHOTS}dashboard.png` });
    await page.getByRole("button", { name: "Edit" }).click();
    const python = await pythonSubscriber(server, "ui.edit");
    await page.locator("#edit-value").fill('{"v": 2}');
    await page.getByRole("button", { name: "Save" }).click();
    assert.deepEqual(await python.next((ev) => ev.kind === "val" && ev.value?.v === 2), { v: 2 });
    python.close();
    await page.locator("#detail pre.value").getByText('"v": 2').waitFor();

    // A conflicting edit: another client writes between the page's read and its save.
    await page.getByRole("button", { name: "Edit" }).click();
    await node.set("ui.edit", { v: "theirs" });
    await page.locator("#edit-value").fill('{"v": "mine"}');
    await page.getByRole("button", { name: "Save" }).click();
    await page.locator(".conflict").waitFor();
    assert.match(await page.locator(".conflict pre.theirs").textContent(), /theirs/);
    assert.match(await page.locator(".conflict pre.mine").textContent(), /mine/);
    await page.screenshot({ path: `${SHOTS}dashboard-conflict.png` });
    const mine = nextValue(waiting, "ui.edit", (v) => v.v === "mine");
    await page.getByRole("button", { name: "Use mine" }).click();
    assert.deepEqual(await mine, { v: "mine" });

    // Delete.
    await row(page, "ui.live.b").click();
    await page.getByRole("button", { name: "Delete", exact: true }).click();
    await page.getByRole("button", { name: "Delete it" }).click();
    await row(page, "ui.live.b").waitFor({ state: "detached" });
    await assert.rejects(node.get("ui.live.b"), NotFound);

    // A bus pattern as the filter.
    await page.locator("#filter").fill("ui.before.*");
    await page.locator("#filter").press("Enter");
    await page.locator('#rows[data-synced="ui.before.*"]').waitFor();
    await row(page, "ui.before.a").waitFor();
    assert.equal(await row(page, "ui.xss").count(), 0);

    // A restart: "reconnecting" meanwhile, then live again.
    await page.evaluate(() => {
      window.seenStates = [];
      new MutationObserver(() => window.seenStates.push(document.getElementById("state").dataset.state))
        .observe(document.getElementById("state"), { attributes: true });
    });
    await server.restart();
    await page.waitForFunction(() => window.seenStates.includes("reconnecting"));
    await page.locator('#state[data-state="open"]').waitFor();
    await node.set("ui.before.c", "after the restart");
    await row(page, "ui.before.c").waitFor();

    assert.deepEqual(dialogs, []);
    assert.deepEqual(errors, []);
  } finally {
    sub.close();
    node.close();
    await browser.close();
    await server.stop();
  }
});

test("the dashboard without a token, or with a wrong one, shows the login box", async () => {
  const server = await startServer();
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(WAIT_MS);
    await page.goto(`${server.http}/ui/`);
    await page.locator("#login").waitFor();
    assert.match(await page.locator("#login-why").textContent(), /No token/);
    assert.equal(await page.locator("#main").isVisible(), false);
    await page.screenshot({ path: `${SHOTS}dashboard-login.png` });

    await page.goto(`${server.http}/ui/#token=wrong-token-0123456789`);
    await page.reload();
    await page.locator("#login-why").getByText("refused").waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem("ipcbus.token")), null);

    // The right token in the box opens the page.
    await page.locator("#login-token").fill(server.token);
    await page.getByRole("button", { name: "Open" }).click();
    await page.locator('#state[data-state="open"]').waitFor();

    // `ipcbus ui` with no desktop: prints the URL, says it opened nothing, succeeds.
    const env = { ...process.env };
    for (const name of ["DISPLAY", "WAYLAND_DISPLAY", "IPCBUS_TOKEN", "IPCBUS_URL"]) delete env[name];
    const ui = spawnSync(BIN, ["ui", "--url", server.url, "--token-file", join(server.dataDir, "token")], { env, encoding: "utf8" });
    assert.equal(ui.status, 0, ui.stderr);
    assert.match(ui.stderr, /no browser/);
    const printed = ui.stdout.trim();
    assert.equal(printed, `${server.http}/ui/#token=${server.token}`);
    const fresh = await browser.newPage();
    fresh.setDefaultTimeout(WAIT_MS);
    await fresh.goto(printed);
    await fresh.locator('#state[data-state="open"]').waitFor();
    // A wrong token: `ipcbus ui` fails with the CLI's hint, printing no URL.
    const refused = spawnSync(BIN, ["ui", "--no-open", "--url", server.url, "--token", "wrong-token-0123456789"], { env, encoding: "utf8" });
    assert.equal(refused.status, 1);
    assert.equal(refused.stdout, "");
    assert.match(refused.stderr, /401/);
  } finally {
    await browser.close();
    await server.stop();
  }
});

test("every /ui/ response carries a strict CSP and nosniff; other origins are refused", async () => {
  const server = await startServer();
  try {
    for (const path of ["/ui/", "/ui/app.js", "/ui/client/codec.js", "/ui/vendor/msgpack/index.mjs", "/ui/missing"]) {
      const res = await fetch(`${server.http}${path}`);
      const csp = res.headers.get("content-security-policy");
      assert.match(csp, /default-src 'self'/, path);
      assert.match(csp, /script-src 'self';/, path);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, path);
      assert.equal(res.headers.get("x-content-type-options"), "nosniff", path);
    }
    assert.equal((await fetch(`${server.http}/ui/app.js`)).headers.get("content-type"), "text/javascript; charset=utf-8");
    const foreign = await fetch(`${server.http}/ui/`, { headers: { Origin: "http://evil.example" } });
    assert.equal(foreign.status, 403);
  } finally {
    await server.stop();
  }
});

test("10 000 keys and a burst of changes: counted, only the rows in view are drawn, the last value shown", async () => {
  const server = await startServer();
  const node = await Bus.connect(server.url, { token: server.token });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  try {
    for (let batch = 0; batch < 10; batch++) {
      await Promise.all(Array.from({ length: 1000 }, (_, i) => node.set(`load.g${batch}.k${i}`, { i, batch })));
    }
    const page = await browser.newPage({ viewport: { width: 1200, height: 700 } });
    page.setDefaultTimeout(WAIT_MS * 2);
    await page.goto(`${server.http}/ui/#token=${server.token}`);
    await page.locator("#count").getByText("10000 keys").waitFor();
    assert.equal(await page.locator('.row[data-path="load"] .count').textContent(), "10000");
    // Virtualised: the rows in view and a few more, not 10 000.
    assert.ok((await page.locator("#rows .row").count()) < 100);
    // A burst of 5 000 writes to keys the page shows; the page keeps up and ends on the last values.
    for (let round = 1; round <= 5; round++) {
      await Promise.all(Array.from({ length: 1000 }, (_, i) => node.set(`load.g0.k${i}`, { i, round })));
    }
    await page.locator('.row[data-key="load.g0.k0"] .value').getByText('{"i":0,"round":5}').waitFor();
    await page.locator('.row[data-path="load.g0"] .toggle').click();
    await page.locator('.row[data-key="load.g0.k0"]').waitFor({ state: "detached" });
    assert.equal(await page.locator('.row[data-path="load.g1"]').count(), 1);
    await page.screenshot({ path: `${SHOTS}dashboard-10k.png` });
  } finally {
    node.close();
    await browser.close();
    await server.stop();
  }
});

test("key options: persisted, ephemeral and TTL badges, the TTL counts down and the row goes when it expires", async () => {
  const server = await startServer();
  const node = await Bus.connect(server.url, { token: server.token });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  try {
    // Before the page opens: replayed, with their ages and options.
    await node.set("opt.persisted", 1, { persist: true });
    await node.set("opt.ephemeral", 2, { ephemeral: true });
    await node.set("opt.long", 3, { ttlMs: 600000 });
    await node.set("opt.plain", 4);
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    page.setDefaultTimeout(WAIT_MS);
    await page.goto(loggedUrl(server));
    await row(page, "opt.plain").waitFor();
    const badges = async (key) => (await row(page, key).locator(".badge").allTextContents()).join(",");
    assert.equal(await badges("opt.persisted"), "persisted");
    assert.equal(await badges("opt.ephemeral"), "ephemeral");
    assert.match(await badges("opt.long"), /^TTL (9|10) min$/);
    assert.equal(await badges("opt.plain"), "");
    // A value there before the page loaded has an age all the same.
    assert.match(await row(page, "opt.plain").locator(".age").textContent(), /^\d+ s$/);
    // The detail panel says it in words.
    await row(page, "opt.persisted").click();
    await page.locator("#detail .options-text").getByText(/persisted: on disk/).waitFor();
    await row(page, "opt.long").click();
    await page.locator("#detail .options-text").getByText(/expires at/).waitFor();
    // An edit of a persisted value keeps it persisted; the edit form says a TTL is dropped.
    await page.getByRole("button", { name: "Edit" }).click();
    await page.locator("#detail .meta").getByText(/saving drops its TTL/).waitFor();
    await page.getByRole("button", { name: "Cancel" }).click();
    await row(page, "opt.persisted").click();
    await page.getByRole("button", { name: "Edit" }).click();
    await page.locator("#edit-value").fill("10");
    await page.getByRole("button", { name: "Save" }).click();
    await row(page, "opt.persisted").locator(".value").getByText("10").waitFor();
    assert.equal(await badges("opt.persisted"), "persisted");

    // A short TTL, set live: its badge counts down, then the row goes.
    await node.set("opt.short", 5, { ttlMs: 4000 });
    const ttl = row(page, "opt.short").locator(".badge.ttl");
    await ttl.waitFor();
    const first = Number(/^TTL (\d+) s$/.exec(await ttl.textContent())[1]);
    assert.ok(first >= 1 && first <= 4, `TTL ${first} s`);
    await page.waitForFunction(
      (first) => {
        const badge = document.querySelector('.row[data-key="opt.short"] .badge.ttl');
        const m = badge && /^TTL (\d+) s$/.exec(badge.textContent);
        return m && Number(m[1]) < first;
      },
      first,
    );
    await page.screenshot({ path: `${SHOTS}dashboard-options.png` });
    await row(page, "opt.short").waitFor({ state: "detached" });
    await assert.rejects(node.get("opt.short"), NotFound);
    assert.equal(await badges("opt.persisted"), "persisted");
    assert.deepEqual(errors, []);
  } finally {
    node.close();
    await browser.close();
    await server.stop();
  }
});

test("the server panel: figures from ipcbus.sys.stats that move with writes, two charts, the self-test button", async () => {
  const server = await startServer();
  const node = await Bus.connect(server.url, { token: server.token });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  try {
    await node.set("shop.open", true);
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.setDefaultTimeout(WAIT_MS);
    await page.goto(loggedUrl(server));
    const figure = (label) => page.locator(`#figures dd[data-figure="${label}"]`);
    // The page's subscription switches the figures on; the first comes within a second.
    await figure("connections").getByText(/^[1-9]/).waitFor();
    assert.equal(await figure("persistence").textContent(), "ok");
    const keysBefore = Number(await figure("keys").textContent());
    const revBefore = Number(await page.locator("#server").getAttribute("data-rev"));
    // Writes by another client: the figures of a later second count them.
    for (let i = 0; i < 30; i++) await node.set(`shop.item${i}`, i);
    await page.waitForFunction(
      ([rev]) => Number(document.getElementById("server").dataset.rev) > rev + 30,
      [revBefore],
    );
    await page.waitForFunction(() => Number(document.getElementById("chart-writes").dataset.points) >= 2);
    assert.ok(Number(await figure("keys").textContent()) >= keysBefore + 30);
    for (const id of ["chart-writes", "chart-deliveries"]) {
      assert.equal(await page.locator(`canvas#${id}`).count(), 1);
    }
    // A chart shows a rate that was not 0 at some point: the 30 writes fell in one second or two.
    await page.waitForFunction(() => Number(document.getElementById("chart-writes").dataset.max) > 0);
    // The server's own key stays out of the tree while the pattern is ">".
    await row(page, "shop.open").waitFor();
    assert.equal(await page.locator('.row[data-path="ipcbus"]').count(), 0);
    // The self-test, on demand.
    await page.locator("#selftest").click();
    await page.locator("#selftest-outcome").getByText(/^passed in [0-9.]+ ms$/).waitFor();
    await figure("self-test").getByText("passed").waitFor();
    await page.locator("#server").screenshot({ path: `${SHOTS}dashboard-server.png` });
    await page.screenshot({ path: `${SHOTS}dashboard-server-page.png` });
  } finally {
    node.close();
    await browser.close();
    await server.stop();
  }
});
