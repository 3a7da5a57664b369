// Starts the real `ipcbus` binary on a free port for a test, and stops it.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
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

/** @returns {Promise<{url: string, http: string, stop: () => Promise<void>}>} */
export async function startServer() {
  if (!existsSync(BIN)) throw new Error(`ipcbus binary not found at ${BIN}: run cargo build -p ipcbus`);
  const port = await freePort();
  const child = spawn(BIN, ["serve", "--port", String(port), "--no-selftest"], {
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
        child.on("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}
