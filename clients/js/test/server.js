// Starts the real `ipcbus` binary on a free port for a test, and stops it.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const BIN = process.env.IPCBUS_BIN ?? `${REPO}target/debug/ipcbus`;

function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * @param {string[]} args extra `ipcbus serve` arguments
 * @returns {Promise<{url: string, stop: () => Promise<void>}>}
 */
export async function startServer(args = []) {
  if (!existsSync(BIN)) throw new Error(`ipcbus binary not found at ${BIN}: run cargo build -p ipcbus`);
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), "ipcbus-js-"));
  const serve = ["serve", "--port", String(port), "--no-selftest", "--data-dir", dataDir, "--no-auth", ...args];
  const child = spawn(BIN, serve, {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, IPCBUS_LOG: "info" },
  });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("ipcbus serve did not start")), 10000);
    let seen = "";
    child.stderr.on("data", (chunk) => {
      seen += chunk;
      if (seen.includes("WebSocket at")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on("exit", (code) => reject(new Error(`ipcbus serve exited with ${code}: ${seen}`)));
  });
  return {
    url: `ws://127.0.0.1:${port}/ws`,
    stop: () =>
      new Promise((resolve) => {
        child.on("exit", () => {
          rmSync(dataDir, { recursive: true, force: true });
          resolve();
        });
        child.kill("SIGTERM");
      }),
  };
}
