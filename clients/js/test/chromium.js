// Runs a page in headless Chromium for a test: the page imports
// clients/js/src unbundled (an import map resolves @msgpack/msgpack) and
// reports back to the test by POSTing JSON to /report.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { extname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
/** How long a test waits for the page's next report before it fails. */
const REPORT_WAIT_MS = 60000;
const TYPES = { ".js": "text/javascript", ".mjs": "text/javascript" };

/** The start of a page: the import map that loads @msgpack/msgpack unbundled. */
export const IMPORT_MAP = `<!doctype html>
<script type="importmap">{"imports": {"@msgpack/msgpack": "/msgpack/index.mjs"}}</script>`;

/**
 * Serves the web server for `html`; `origin` is its address (for the bus's
 * --allow-origin). `open(query)` starts Chromium on the page with that query
 * string; `report(match)` resolves to the first report for which `match` is
 * true, waiting for it if needed. `close()` ends it all.
 */
export async function pageServer(html) {
  const reports = [];
  let waiters = [];
  const web = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    if (path === "/report") {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        res.end();
        reports.push(JSON.parse(body));
        waiters = waiters.filter((w) => !w());
      });
      return;
    }
    const file =
      path === "/" ? null
      : path.startsWith("/src/") ? join(ROOT, path)
      : path.startsWith("/msgpack/") ? join(ROOT, "node_modules/@msgpack/msgpack/dist.esm", path.slice(9))
      : undefined;
    if (file === null) return res.end(html);
    if (!file || !existsSync(file)) return res.writeHead(404).end();
    res.writeHead(200, { "Content-Type": TYPES[extname(file)] ?? "application/octet-stream" });
    res.end(readFileSync(file));
  });
  await new Promise((resolve) => web.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${web.address().port}`;
  let chromium;
  let exited;
  const profile = mkdtempSync(join(tmpdir(), "ipcbus-chromium-"));
  return {
    origin,
    reports,
    open(query) {
      if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM)`);
      chromium = spawn(CHROMIUM, [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        `--user-data-dir=${profile}`, `${origin}/?${new URLSearchParams(query)}`,
      ], { stdio: "ignore", detached: true }); // its own process group, to end its helpers too
      exited = new Promise((resolve) => chromium.on("exit", resolve));
    },
    report(match) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the page did not report in ${REPORT_WAIT_MS} ms; it reported ${JSON.stringify(reports)}`)), REPORT_WAIT_MS);
        const check = () => {
          const found = reports.find(match);
          if (found) {
            clearTimeout(timer);
            resolve(found);
          }
          return found !== undefined;
        };
        if (!check()) waiters.push(check);
      });
    },
    async close() {
      if (chromium) {
        process.kill(-chromium.pid, "SIGKILL");
        await exited;
      }
      web.close();
      rmSync(profile, { recursive: true, force: true, maxRetries: 10 });
    },
  };
}
