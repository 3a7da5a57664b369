// Connection: the socket under a Bus, its states and its backoff. It opens
// a WebSocket, reads the hello, lets the Bus prepare the new link (its
// ephemeral keys), hands the link over, and when it closes tries again, as
// docs/clients.md "The reconnect contract" says.
import { diagnose, discoverToken, hasTokenParam, withToken } from "./auth.js";
import { Forbidden, ServerError, Unauthorized, Unavailable } from "./errors.js";

/** Reconnect backoff: the first wait, in ms; it doubles after each failed attempt. */
export const BACKOFF_FIRST_MS = 100;
/** Reconnect backoff: the longest wait, in ms. */
export const BACKOFF_MAX_MS = 5000;
/**
 * The least time the first connect's last attempt gets, in ms, even at the
 * connect deadline: else an attempt made just before it could not succeed.
 */
const LAST_ATTEMPT_MS = 200;
/**
 * A connection on which nothing arrives for this long, in ms, is probed
 * with a request; if the reply does not come within the call timeout, the
 * connection is taken for dead and replaced. The server pings every 10 s,
 * but neither a browser nor Node shows pings to a page, and a network that
 * went away closes nothing: this is what notices it.
 */
export const IDLE_TIMEOUT_MS = 45000;

/**
 * Watches `link` for silence. `dead` resolves (with a close-like
 * `{code, reason}`) when a probe sent after `idleMs` of silence got nothing
 * back within `timeoutMs`; `stop()` ends the watch.
 */
function watchQuiet(link, idleMs, timeoutMs, probe) {
  let heard = 0;
  const onMessage = () => (heard += 1);
  link.ws.addEventListener("message", onMessage);
  let declare;
  const dead = new Promise((resolve) => (declare = resolve));
  let seen = heard;
  let quietSince = performance.now();
  let probedAt;
  const timer = setInterval(() => {
    const now = performance.now();
    if (heard !== seen) {
      [seen, quietSince, probedAt] = [heard, now, undefined];
    } else if (probedAt !== undefined && now - probedAt >= timeoutMs) {
      declare({ code: 1006, reason: `nothing from the server for ${Math.round(now - quietSince)} ms: the connection is taken for dead` });
    } else if (probedAt === undefined && now - quietSince >= idleMs) {
      probedAt = now;
      try {
        link.ws.send(probe());
      } catch {
        // closing already: the close ends the link
      }
    }
  }, Math.max(10, Math.min(idleMs, timeoutMs) / 4));
  timer.unref?.(); // Node: the socket, not this timer, keeps a process alive
  return {
    dead,
    stop() {
      clearInterval(timer);
      link.ws.removeEventListener("message", onMessage);
    },
  };
}

/**
 * @typedef {{ws: WebSocket, hello: object, closed: Promise<{code: number, reason: string}>,
 *   early: Array<string|ArrayBuffer>, asked: string[]}} Link
 * An open WebSocket that has sent its hello; `closed` settles when it closes.
 * `early` holds what arrived after the hello until the host reads the link
 * itself (the events of the subscriptions named in the upgrade request can
 * come in the same read as the hello); `asked` are those subscriptions.
 */

/**
 * `url` with a `sub` parameter for each pattern (docs/protocol.md §5.1),
 * encoded as a form, as the server decodes it; its other parameters stay.
 * @param {string} url
 * @param {string[]} patterns
 */
export function withSubs(url, patterns) {
  if (!patterns.length) return url;
  const u = new URL(url, globalThis.location?.href);
  for (const pattern of patterns) u.searchParams.append("sub", pattern);
  return u.href;
}

/** Keeps what arrives on `link` for its next reader. */
function keepEarly(link) {
  link.ws.onmessage = (m) => link.early.push(m.data);
}

/** A browser does not say why a WebSocket failed: name the likely causes. */
export function refusedMessage(url) {
  const origin = globalThis.location?.origin;
  const page = origin && origin !== "null" ? ` (this page: ${origin})` : "";
  return (
    `cannot connect to ${url}: the server is not running there, or it refused the connection. ` +
    `Check the token and that the server allows this origin${page} with --allow-origin`
  );
}

/**
 * Opens a WebSocket and waits for the server's hello.
 * @returns {Promise<Link>}
 */
function openLink(wsUrl, url, codec, timeoutMs, signal) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl, [codec.name]);
    ws.binaryType = "arraybuffer";
    const closed = new Promise((done) => ws.addEventListener("close", (ev) => done({ code: ev.code, reason: ev.reason })));
    let settled = false;
    const settle = () => {
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      ws.onmessage = ws.onerror = null;
    };
    const fail = (error) => {
      if (settled) return;
      settle();
      ws.close();
      reject(error);
    };
    const onAbort = () => fail(signal.reason);
    const timer = setTimeout(() => fail(new Unavailable(`no hello from ${url} within ${timeoutMs} ms`)), timeoutMs);
    signal.addEventListener("abort", onAbort);
    ws.onerror = () => fail(new Unavailable(refusedMessage(url)));
    closed.then(({ code, reason }) => fail(new Unavailable(`${url} closed the connection before its hello (${code} ${reason})`)));
    ws.onmessage = (msg) => {
      let hello;
      try {
        hello = codec.decode(msg.data);
      } catch (e) {
        return fail(new Unavailable(`bad hello from ${url}: ${e}`));
      }
      if (hello?.ev !== "hello") return fail(new Unavailable(`${url} did not greet with hello`));
      if (settled) return;
      settle();
      const link = { ws, hello, closed, early: [], asked: [] };
      keepEarly(link); // what follows the hello, maybe in the same read, before anyone else reads
      resolve(link);
    };
  });
}

/**
 * Sends requests on a link nobody else uses yet and resolves to their
 * replies in order. Anything else that arrives meanwhile (the events of
 * subscriptions it has already) is kept in `link.early`.
 * Rejects if the link closes, the replies take longer than `timeoutMs`, or
 * `signal` aborts (the client was closed).
 * @param {Link} link
 * @param {object[]} messages
 * @param {() => number} nextId
 * @param {AbortSignal} signal
 */
export function exchange(link, codec, messages, nextId, timeoutMs, signal) {
  if (!messages.length) return Promise.resolve([]);
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const ids = messages.map((m) => (m.id = nextId()));
    const wanted = new Set(ids);
    const replies = new Map();
    const end = (error) => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      keepEarly(link);
      if (error) reject(error);
    };
    const onAbort = () => end(signal.reason);
    const timer = setTimeout(() => end(new Unavailable(`no reply from the new connection within ${timeoutMs} ms`)), timeoutMs);
    signal.addEventListener("abort", onAbort);
    link.closed.then(({ code, reason }) => end(new Unavailable(`the new connection closed (${code} ${reason})`)));
    link.ws.onmessage = (m) => {
      let reply;
      try {
        reply = codec.decode(m.data);
      } catch {
        return link.early.push(m.data); // the host reports it
      }
      if (!wanted.has(reply?.id)) return link.early.push(m.data);
      replies.set(reply.id, reply);
      if (replies.size < ids.length) return;
      end();
      resolve(ids.map((id) => replies.get(id)));
    };
    for (const m of messages) link.ws.send(codec.encode(m));
  });
}

/** Why a link ended, for `stateReason` and errors. */
export function describeClose(url, { code, reason }) {
  return `connection to ${url} lost (${code}${reason ? ` ${reason}` : ""})`;
}

/**
 * The connect and reconnect loop. `host` (the Bus) is told of every step:
 * `_setState(state, reason)`, `await _prepare(link, signal)` before a link is used (`signal`
 * aborts when the client is closed; a ServerError it throws ends a first connect, as a refusal),
 * `_adopt(link)` when it is, `_lost(end)` when it closes, and
 * `_shutdown(reason, error)` when the loop ends for good.
 */
export class Connection {
  constructor(host, url, { codec, timeout, connectTimeout, failFast, reconnect, token, idleTimeout = IDLE_TIMEOUT_MS, probe, subs = [] }) {
    this.url = url;
    /** Subscriptions to name in the upgrade request, until the first connection opens. */
    this._subs = subs;
    this.reconnect = reconnect;
    this._host = host;
    this._codec = codec;
    this._timeout = timeout;
    this._connectTimeout = connectTimeout;
    this._failFast = failFast;
    this._idleTimeout = idleTimeout;
    this._probe = probe;
    this._token = token ?? undefined;
    this._stop = new AbortController();
    /** @type {Link|null} */
    this.link = null;
    /** Resolves at the first open; rejects if the first connect gives up. */
    this.opened = new Promise((resolve, reject) => {
      this._firstOpen = resolve;
      this._firstFail = reject;
    });
    this.opened.catch(() => {});
    this._run();
  }

  /** Ends the loop and closes the socket. The host reports the closing. */
  close() {
    this._firstFail(new Unavailable(`closed: the client was closed before it connected to ${this.url}`));
    this._stop.abort(new Unavailable("closed"));
    this.link?.ws.close(1000);
  }

  async _run() {
    const signal = this._stop.signal;
    const aborted = new Promise((done) => signal.addEventListener("abort", done));
    const deadline = performance.now() + this._connectTimeout;
    // After the constructor: a listener added right after `new Bus()` sees it.
    await null;
    this._host._setState("connecting", `connecting to ${this.url}`);
    let delay = BACKOFF_FIRST_MS;
    let first = true;
    let refused; // the last refusal logged while reconnecting
    while (!signal.aborted) {
      let link;
      try {
        link = await this._attempt(first, deadline);
      } catch (error) {
        if (signal.aborted) return;
        // A ServerError: the server refused the subscriptions named in the upgrade request.
        const why = error instanceof ServerError ? error : await diagnose(this.url, this._wsUrl, this._found, error, this._timeout);
        const refusal = why instanceof Unauthorized || why instanceof Forbidden || why instanceof ServerError;
        if (first) {
          const left = deadline - performance.now();
          if (refusal || this._failFast) return this._giveUp(why);
          if (left <= 0) {
            return this._giveUp(new Unavailable(`could not connect to ${this.url} within ${this._connectTimeout} ms: ${why.message}`));
          }
          await this._sleep(Math.min(delay, left));
        } else {
          if (refusal && why.message !== refused) console.warn(`ipcbus: reconnecting: ${why.message} (will keep trying)`);
          if (refusal) refused = why.message;
          await this._sleep(delay);
        }
        delay = Math.min(delay * 2, BACKOFF_MAX_MS);
        continue;
      }
      if (signal.aborted) return link.ws.close(1000);
      first = false;
      delay = BACKOFF_FIRST_MS;
      refused = undefined;
      this.link = link;
      this._host._adopt(link);
      this._firstOpen();
      const quiet = watchQuiet(link, this._idleTimeout, this._timeout, this._probe);
      const end = await Promise.race([link.closed, aborted, quiet.dead]);
      quiet.stop();
      this.link = null;
      if (signal.aborted) return;
      link.ws.close(); // if the watch ended it: the socket goes, whatever the network does
      const reason = describeClose(this.url, end);
      this._host._lost(end, reason);
      if (!this.reconnect) {
        this._stop.abort();
        return this._host._shutdown(reason, new Unavailable(`${reason}; reconnect is off`));
      }
      this._host._setState("reconnecting", reason);
      await this._sleep(delay);
    }
  }

  /**
   * One attempt: the token, the socket, the hello, then the host's
   * preparation. The first connect names the subscriptions in the URL; a
   * reconnect does not (the host makes them again with `sub` requests).
   */
  async _attempt(first, deadline) {
    this._found = await this._credentials();
    const asked = first ? this._subs : [];
    this._wsUrl = withSubs(withToken(this.url, this._found.token), asked);
    let limit = this._timeout;
    if (this._failFast) limit = Math.min(limit, this._connectTimeout);
    else if (first) limit = Math.min(limit, Math.max(deadline - performance.now(), LAST_ATTEMPT_MS));
    const link = await openLink(this._wsUrl, this.url, this._codec, limit, this._stop.signal);
    link.asked = asked;
    try {
      await this._host._prepare(link, this._stop.signal);
    } catch (e) {
      link.ws.close();
      if (this._stop.signal.aborted || e instanceof ServerError) throw e;
      const step = link.asked.length ? "making the subscriptions named at connect" : "setting ephemeral keys again";
      throw new Unavailable(`connection to ${this.url} lost while ${step}: ${e.message}`);
    }
    return link;
  }

  /** What to send as the token: looked up at every attempt, so a rewritten token file is picked up. */
  async _credentials() {
    if (this._token !== undefined) return { token: this._token, source: "the token given to Bus.connect" };
    if (hasTokenParam(this.url)) return { source: "the URL's ?token=", inUrl: true };
    return discoverToken();
  }

  _giveUp(error) {
    this._stop.abort();
    this._firstFail(error);
    this._host._shutdown(error.message, error);
  }

  /** Waits `ms`, or less if the client is closed meanwhile. */
  _sleep(ms) {
    const signal = this._stop.signal;
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done);
    });
  }
}
