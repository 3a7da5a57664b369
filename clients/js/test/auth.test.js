// The access token in Node, against the real server: every way the client
// finds it, and what a refusal gives.
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, test } from "node:test";
import { Bus, Unauthorized } from "../src/index.js";
import { platformDataDir } from "../src/auth.js";
import { CLIENT_ENV, startServer } from "./server.js";

let server;
const scratch = mkdtempSync(join(tmpdir(), "ipcbus-js-auth-"));
const saved = { ...process.env };

before(async () => {
  server = await startServer();
});
after(async () => {
  await server.stop();
  rmSync(scratch, { recursive: true, force: true });
});
// Every test starts with no token settings and no token file to find.
const clean = () => {
  for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
  Object.assign(process.env, saved);
  for (const name of CLIENT_ENV) delete process.env[name];
  process.env.XDG_DATA_HOME = join(scratch, "no-such-dir");
};
clean();
afterEach(clean);

async function works(url, options) {
  const bus = await Bus.connect(url, options);
  try {
    return (await bus.set("auth.ok", true)) > 0;
  } finally {
    bus.close();
  }
}

test("found in $IPCBUS_DATA_DIR", async () => {
  process.env.IPCBUS_DATA_DIR = server.dataDir;
  assert.ok(await works(server.url));
});

test("found in the platform data dir", async () => {
  process.env.XDG_DATA_HOME = join(scratch, "xdg");
  mkdirSync(join(scratch, "xdg", "ipcbus"), { recursive: true });
  copyFileSync(join(server.dataDir, "token"), join(scratch, "xdg", "ipcbus", "token"));
  assert.ok(await works(server.url));
});

test("platform data dirs", async () => {
  process.env.HOME = "/home/u";
  process.env.APPDATA = "C:\\Users\\u\\AppData\\Roaming";
  process.env.XDG_DATA_HOME = "relative/ignored";
  assert.equal(await platformDataDir("linux"), join("/home/u", ".local", "share"));
  assert.equal(await platformDataDir("darwin"), join("/home/u", "Library", "Application Support"));
  assert.equal(await platformDataDir("win32"), "C:\\Users\\u\\AppData\\Roaming");
});

test("$IPCBUS_TOKEN and $IPCBUS_TOKEN_FILE", async () => {
  process.env.IPCBUS_TOKEN = ` ${server.token}\n`;
  assert.ok(await works(server.url));
  delete process.env.IPCBUS_TOKEN;
  writeFileSync(join(scratch, "t"), `${server.token}\nsecond line ignored\n`);
  process.env.IPCBUS_TOKEN_FILE = join(scratch, "t");
  assert.ok(await works(server.url));
});

test("the token option wins; a URL with ?token= needs no lookup", async () => {
  process.env.IPCBUS_TOKEN = "wrong";
  assert.ok(await works(server.url, { token: server.token }));
  assert.ok(await works(`${server.url}?token=${server.token}`)); // a lookup would have replaced it
});

test("a wrong token is Unauthorized", async () => {
  await assert.rejects(Bus.connect(server.url, { token: "wrong" }), (e) => {
    assert.ok(e instanceof Unauthorized, String(e));
    assert.match(e.message, /token given to Bus.connect/);
    return true;
  });
  writeFileSync(join(scratch, "stale"), "stale\n");
  process.env.IPCBUS_TOKEN_FILE = join(scratch, "stale");
  await assert.rejects(Bus.connect(server.url), (e) => e instanceof Unauthorized && e.tokenFile === join(scratch, "stale"));
});

test("no token is Unauthorized, and says where the client looked", async () => {
  process.env.IPCBUS_DATA_DIR = join(scratch, "empty");
  await assert.rejects(Bus.connect(server.url), (e) => {
    assert.ok(e instanceof Unauthorized, String(e));
    assert.equal(e.tokenFile, join(scratch, "empty", "token"));
    assert.match(e.message, /none was found.*empty\/token could not be read/);
    return true;
  });
});
