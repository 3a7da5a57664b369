// Where the access token lives, for Node: the same lookup as the server and
// the Rust and Python clients (ipcbus_protocol::auth), so that a program on
// the server's machine needs no configuration. Browsers cannot read the
// token file and never load the Node modules used here: give them the token.
//
// - The data directory is $IPCBUS_DATA_DIR, else the platform's data
//   directory plus "ipcbus" ($XDG_DATA_HOME/ipcbus or ~/.local/share/ipcbus
//   on Linux, ~/Library/Application Support/ipcbus on macOS,
//   %APPDATA%\ipcbus on Windows).
// - The token file is $IPCBUS_TOKEN_FILE, else <data dir>/token.
// - A client uses, in order: a token it is given, $IPCBUS_TOKEN, the token
//   file if it can read it, else no token.
import { Forbidden, Unauthorized, refusedSubscriptions } from "./errors.js";

/** Whether this runtime is Node (or one that provides its modules). */
export const IS_NODE = typeof globalThis.process?.versions?.node === "string";

// Imported only when called, so that a browser never asks for them.
const nodeModule = (name) => import(/* webpackIgnore: true */ /* @vite-ignore */ name);

/**
 * The platform's data directory (Rust `dirs::data_dir()`). Node only.
 * @param {string} [platform] defaults to `process.platform`
 * @returns {Promise<string|undefined>}
 */
export async function platformDataDir(platform = process.platform) {
  const { homedir } = await nodeModule("node:os");
  const { isAbsolute, join } = await nodeModule("node:path");
  const env = process.env;
  if (platform === "win32") return env.APPDATA || join(homedir(), "AppData", "Roaming");
  const home = env.HOME || homedir();
  if (!home) return undefined;
  if (platform === "darwin") return join(home, "Library", "Application Support");
  if (env.XDG_DATA_HOME && isAbsolute(env.XDG_DATA_HOME)) return env.XDG_DATA_HOME;
  return join(home, ".local", "share");
}

/**
 * The token file a client reads by default. Node only.
 * @returns {Promise<string|undefined>}
 */
export async function defaultTokenFile() {
  const { join } = await nodeModule("node:path");
  const env = process.env;
  if (env.IPCBUS_TOKEN_FILE) return env.IPCBUS_TOKEN_FILE;
  if (env.IPCBUS_DATA_DIR) return join(env.IPCBUS_DATA_DIR, "token");
  const base = await platformDataDir();
  return base && join(base, "ipcbus", "token");
}

/**
 * The token for a client that was given none: `token` is undefined when none
 * was found, and `source` then says where the client looked.
 * @returns {Promise<{token?: string, source: string, tokenFile?: string}>}
 */
export async function discoverToken() {
  if (!IS_NODE) return { source: "no token was given (a browser cannot look one up)" };
  const fromEnv = (process.env.IPCBUS_TOKEN ?? "").trim();
  if (fromEnv) return { token: fromEnv, source: "the token in $IPCBUS_TOKEN" };
  const tokenFile = await defaultTokenFile();
  if (!tokenFile) return { source: "$IPCBUS_TOKEN is unset and there is no data directory to look in" };
  const { readFile } = await nodeModule("node:fs/promises");
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(await readFile(tokenFile));
    const token = text.split("\n", 1)[0].trim();
    if (token) return { token, source: `the token in the token file ${tokenFile}`, tokenFile };
  } catch {
    // unreadable, or not UTF-8: as if there were no file
  }
  return { source: `$IPCBUS_TOKEN is unset and the token file ${tokenFile} could not be read`, tokenFile };
}

/** Whether `url` carries its own `?token=`: then nothing is looked up. */
export function hasTokenParam(url) {
  try {
    return new URL(url, globalThis.location?.href).searchParams.has("token");
  } catch {
    return false;
  }
}

/**
 * `url` with `token` in its query: browsers cannot set headers on a
 * WebSocket, so the token always travels as `?token=`.
 */
export function withToken(url, token) {
  if (token == null) return url;
  const u = new URL(url, globalThis.location?.href);
  u.searchParams.set("token", token);
  return u.href;
}

/**
 * Why a connect failed, when it can be found out. A WebSocket reports no
 * HTTP status, so in Node the same URL is asked again over plain HTTP: the
 * server answers 401 or 403 before it looks at the upgrade. Browsers cannot
 * do that (the page's origin may be the very problem), so there the answer
 * is the original error. A URL that names subscriptions (`sub=`,
 * docs/protocol.md §5.1) is asked again in browsers too: a page whose
 * origin the server allows can read its 400 (`bad_pattern`) or 429
 * (`limit`), which then rejects as BadPattern or LimitReached.
 * @param {string} url as the caller gave it
 * @param {string} wsUrl with the token
 * @param {{token?: string, source: string, tokenFile?: string}} found what was sent
 * @param {Error} error the failed connect
 * @param {number} timeout ms
 * @returns {Promise<Error>}
 */
export async function diagnose(url, wsUrl, found, error, timeout) {
  let subs;
  try {
    subs = new URL(wsUrl, globalThis.location?.href).searchParams.has("sub");
  } catch {
    return error; // a URL that cannot be parsed: the connect's own error says so
  }
  if (!IS_NODE && !subs) return error;
  let res;
  let body;
  try {
    res = await fetch(wsUrl.replace(/^ws/, "http"), { signal: AbortSignal.timeout(timeout) });
    if (subs && (res.status === 400 || res.status === 429)) body = await res.json();
    else await res.body?.cancel();
  } catch {
    return error;
  }
  if (body?.error?.code) return refusedSubscriptions(url, body.error);
  if (!IS_NODE) return error; // as without subscriptions
  if (res.status === 401 && found.token === undefined && !found.inUrl) {
    return new Unauthorized(
      `${url} needs a token (401) and none was found: ${found.source}. Pass {token}, or set IPCBUS_TOKEN, ` +
        "or IPCBUS_TOKEN_FILE / IPCBUS_DATA_DIR to the server's token file",
      found.tokenFile,
    );
  }
  if (res.status === 401) {
    return new Unauthorized(`${url} refused ${found.source} (401): it is not the server's current token`, found.tokenFile);
  }
  if (res.status === 403) return new Forbidden(`${url} refused the connection (403): its Origin is not allowed`);
  return error;
}
