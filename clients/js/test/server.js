// Starts the real `ipcbus` binary on a free port for a test, and stops it.
// The server runs with its token on; `token` and `dataDir` tell the test
// where to find it.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const BIN = process.env.IPCBUS_BIN ?? `${REPO}target/debug/ipcbus`;
/** Where clients look for the token; tests set them for clients only. */
export const CLIENT_ENV = ["IPCBUS_TOKEN", "IPCBUS_TOKEN_FILE", "IPCBUS_DATA_DIR", "IPCBUS_URL"];

/** A new empty directory for a server's data. */
export function tempDir() {
  return mkdtempSync(join(tmpdir(), "ipcbus-js-"));
}

export function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function serve(port, dataDir, args) {
  const env = { ...process.env, IPCBUS_LOG: "info" };
  for (const name of CLIENT_ENV) delete env[name]; // the server has --data-dir
  const serve = ["serve", "--port", String(port), "--no-selftest", "--data-dir", dataDir, ...args];
  const child = spawn(BIN, serve, { stdio: ["ignore", "ignore", "pipe"], env });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  let seen = "";
  const started = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("ipcbus serve did not start")), 10000);
    child.stderr.on("data", (chunk) => {
      seen += chunk;
      // The dashboard's URL is logged just after the WebSocket's.
      if (seen.includes("WebSocket at") && /dashboard: \S+\n/.test(seen)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on("exit", (code) => reject(new Error(`ipcbus serve exited with ${code}: ${seen}`)));
  });
  const stop = () => {
    child.kill("SIGTERM");
    return exited;
  };
  stop.log = () => seen;
  return started.then(() => stop);
}

/**
 * @param {string[]} args extra `ipcbus serve` arguments
 * @param {{port?: number, dataDir?: string}} [at] where, if the test chose already
 * @returns {Promise<{url: string, http: string, token: string, dataDir: string,
 *   restart: () => Promise<void>, stop: () => Promise<void>}>}
 *   `restart` keeps the port and the data dir (and so the token and persisted keys)
 */
export async function startServer(args = [], at = {}) {
  if (!existsSync(BIN)) throw new Error(`ipcbus binary not found at ${BIN}: run cargo build -p ipcbus`);
  const port = at.port ?? (await freePort());
  const dataDir = at.dataDir ?? tempDir();
  let stopServer = await serve(port, dataDir, args);
  return {
    url: `ws://127.0.0.1:${port}/ws`,
    http: `http://127.0.0.1:${port}`,
    dataDir,
    token: readFileSync(join(dataDir, "token"), "utf8").trim(),
    /** What the server has logged so far (stderr). */
    log: () => stopServer.log(),
    restart: async () => {
      await stopServer();
      stopServer = await serve(port, dataDir, args);
    },
    stop: async () => {
      await stopServer();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
