// Bus: a connection to ipcbus over the platform WebSocket (browsers, and
// Node 20 with --experimental-websocket or Node 22+). Requests are promises,
// pipelined and matched to replies by id.
import { diagnose, discoverToken, hasTokenParam, withToken } from "./auth.js";
import { JSON_CODEC, MSGPACK, codecFor } from "./codec.js";
import { Timeout, Unavailable, fromWire } from "./errors.js";
import { checkValue } from "./value.js";
import { Watch } from "./watch.js";

export const DEFAULT_URL = "ws://127.0.0.1:9099/ws";

/**
 * @typedef {{kind: "val"|"del"|"synced", key?: string, value?: unknown, rev?: number}} Event
 */

/** Events an unread async iterator holds before each key keeps only its newest. */
export const ITERATOR_CAPACITY = 4096;

/** The largest `ttl_ms` the protocol accepts. */
const MAX_TTL_MS = 2 ** 53 - 1;

/**
 * A live subscription: a callback target and an async iterator of events.
 * An iterator that is not read keeps at most ITERATOR_CAPACITY events; past
 * that, an event for a key that already has one waiting replaces it (the
 * newest state wins, `skipped` counts the rest), as on the server.
 */
export class Subscription {
  constructor(bus, pattern, callback) {
    this.pattern = pattern;
    this._bus = bus;
    this._callback = callback;
    this._queue = [];
    this._pulls = [];
    this.skipped = 0;
    this.id = null;
    this.closed = false;
  }

  _deliver(event) {
    if (this._callback) {
      try {
        this._callback(event);
      } catch (e) {
        console.error("ipcbus: subscription callback failed", e);
      }
      return;
    }
    if (this._pulls.length) return this._pulls.shift()({ value: event, done: false });
    if (this._queue.length >= ITERATOR_CAPACITY && event.key !== undefined) {
      const i = this._queue.findLastIndex((e) => e.key === event.key);
      if (i >= 0) {
        this._queue[i] = event;
        this.skipped += 1;
        return;
      }
    }
    this._queue.push(event);
  }

  /** Unsubscribes; the async iterator ends. */
  close() {
    if (this.closed) return;
    this.closed = true;
    this._bus._unsubscribe(this);
    for (const pull of this._pulls.splice(0)) pull({ value: undefined, done: true });
    this.onClose?.();
  }

  [Symbol.asyncIterator]() {
    return {
      next: () => {
        if (this._queue.length) return Promise.resolve({ value: this._queue.shift(), done: false });
        if (this.closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => this._pulls.push(resolve));
      },
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

export class Bus {
  /**
   * Connects and waits for the server's hello.
   *
   * The access token goes in the URL as `?token=` (browsers cannot set
   * headers on a WebSocket). Without `token`, and unless `url` has its own
   * `?token=`, Node looks it up as the server wrote it: `$IPCBUS_TOKEN`, else
   * the token file (`$IPCBUS_TOKEN_FILE`, else `token` in `$IPCBUS_DATA_DIR`
   * or the platform data directory). A browser must be given the token.
   *
   * A refused connection is `Unauthorized` (401) or `Forbidden` (403) in
   * Node; a browser is not told why, and sees `Unavailable`.
   *
   * @example
   * const bus = await Bus.connect("ws://127.0.0.1:9099/ws", { token });
   * @param {string} [url]
   * @param {{codec?: string, timeout?: number, token?: string}} [options] codec: MSGPACK (default) or JSON_CODEC; timeout in ms
   * @returns {Promise<Bus>}
   */
  static async connect(url = DEFAULT_URL, options = {}) {
    let found = { token: options.token ?? undefined, source: "the token given to Bus.connect" };
    if (found.token === undefined) {
      found = hasTokenParam(url) ? { source: "the URL's ?token=", inUrl: true } : await discoverToken();
    }
    const bus = new Bus(url, { ...options, token: found.token });
    try {
      await bus._opened;
    } catch (e) {
      throw await diagnose(url, bus._wsUrl, found, e, bus.timeout);
    }
    return bus;
  }

  /**
   * Opens the connection; prefer `Bus.connect`, which also looks up the
   * token and waits for the hello.
   * @param {string} url
   * @param {{codec?: string, timeout?: number, token?: string}} [options]
   */
  constructor(url, { codec = MSGPACK, timeout = 5000, token } = {}) {
    if (typeof WebSocket === "undefined") {
      throw new Unavailable("no WebSocket in this runtime: use a browser, Node 22+, or Node 20 with --experimental-websocket");
    }
    this.url = url;
    this.timeout = timeout;
    this._codec = codecFor(codec);
    this._nextId = 1;
    this._pending = new Map();
    this._routes = new Map();
    this._wsUrl = withToken(url, token);
    this._ws = new WebSocket(this._wsUrl, [this._codec.name]);
    this._ws.binaryType = "arraybuffer";
    this._opened = new Promise((resolve, reject) => {
      this._rejectOpen = reject;
      this._ws.onmessage = (msg) => {
        let hello;
        try {
          hello = this._codec.decode(msg.data);
        } catch (e) {
          return reject(new Unavailable(`bad hello from ${url}: ${e}`));
        }
        if (hello.ev !== "hello") return reject(new Unavailable(`${url} did not greet with hello`));
        this.session = hello.session;
        this.store = hello.store;
        this._ws.onmessage = (m) => this._route(m.data);
        resolve();
      };
      this._ws.onerror = () => reject(new Unavailable(refusedMessage(url)));
    });
    this._ws.onclose = () => this._lost();
    // Settles `_opened` if the socket closes before the hello.
    this._opened.catch(() => {});
    this._ws.addEventListener("close", () => this._rejectOpen?.(new Unavailable(`${url} closed the connection`)));
  }

  get codec() {
    return this._codec.name;
  }

  /** Closes the connection. */
  close() {
    this._ws.close(1000);
  }

  _lost() {
    for (const { reject, timer } of this._pending.values()) {
      clearTimeout(timer);
      reject(new Unavailable("connection closed"));
    }
    this._pending.clear();
    for (const sub of this._routes.values()) sub.close();
  }

  _call(message, onReply) {
    if (this._ws.readyState !== 1) return Promise.reject(new Unavailable("not connected"));
    const id = this._nextId++;
    message.id = id;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new Timeout(`no reply to ${message.op} within ${this.timeout} ms`));
      }, this.timeout);
      this._pending.set(id, { resolve, reject, timer, onReply });
      this._ws.send(this._codec.encode(message));
    });
  }

  _route(data) {
    let msg;
    try {
      msg = this._codec.decode(data);
    } catch (e) {
      return console.warn("ipcbus: undecodable message from the server", e);
    }
    if (msg.id !== undefined) {
      const waiting = this._pending.get(msg.id);
      if (!waiting) {
        // A `sub` whose caller timed out: end it, or the server keeps sending.
        if (msg.ok && msg.sub !== undefined) this._ws.send(this._codec.encode({ op: "unsub", sub: msg.sub }));
        return;
      }
      this._pending.delete(msg.id);
      clearTimeout(waiting.timer);
      if (!msg.ok) return waiting.reject(fromWire(msg.error));
      waiting.onReply?.(msg);
      return waiting.resolve(msg);
    }
    if (msg.ev === "error") return console.warn("ipcbus: server reported", msg.error);
    const sub = this._routes.get(msg.sub);
    if (sub && !sub.closed) sub._deliver({ kind: msg.ev, key: msg.key, value: msg.value, rev: msg.rev });
  }

  /**
   * Sets `key`; resolves to the rev.
   * - `ifRev`: a compare-and-set (0: only if absent), else RevMismatch;
   * - `persist`: the server writes the value to disk before it answers; it
   *   survives a restart of the server;
   * - `ephemeral`: the server deletes the key when this connection ends
   *   (this client does not reconnect, so it is gone for good);
   * - `ttlMs`: the server deletes the key after this many ms (at least 1).
   * @example
   * await bus.set("svc.weather.online", true, { ephemeral: true });
   * @param {string} key
   * @param {unknown} value
   * @param {{ifRev?: number, persist?: boolean, ephemeral?: boolean, ttlMs?: number}} [options]
   * @returns {Promise<number>}
   */
  async set(key, value, { ifRev, persist, ephemeral, ttlMs } = {}) {
    if (persist && ephemeral) {
      throw new TypeError("persist and ephemeral exclude each other: an ephemeral key ends with its connection");
    }
    checkValue(value, this._codec.name === MSGPACK);
    const message = { op: "set", key, value };
    if (ifRev !== undefined) message.if_rev = ifRev;
    if (persist) message.persist = true;
    if (ephemeral) message.ephemeral = true;
    if (ttlMs !== undefined) {
      if (typeof ttlMs !== "number" || !(ttlMs >= 0)) throw new RangeError(`ttlMs must be a number >= 0, not ${ttlMs}`);
      message.ttl_ms = Math.min(Math.max(1, Math.round(ttlMs)), MAX_TTL_MS);
    }
    return (await this._call(message)).rev;
  }

  /**
   * The value of `key`; `options.default` if given and absent, else NotFound.
   * @param {string} key
   * @param {{default?: unknown}} [options]
   * @returns {Promise<unknown>}
   */
  async get(key, options = {}) {
    try {
      return (await this._call({ op: "get", key })).value;
    } catch (e) {
      if (e.code === "not_found" && "default" in options) return options.default;
      throw e;
    }
  }

  /**
   * Deletes `key`; resolves to the rev of the deletion.
   * @param {string} key
   * @param {{ifRev?: number}} [options]
   * @returns {Promise<number>}
   */
  async delete(key, { ifRev } = {}) {
    const message = { op: "del", key };
    if (ifRev !== undefined) message.if_rev = ifRev;
    return (await this._call(message)).rev;
  }

  /**
   * Keys with a value and their revs, sorted.
   * @param {string} [pattern]
   * @returns {Promise<Array<{key: string, rev: number}>>}
   */
  async keys(pattern) {
    const message = { op: "keys" };
    if (pattern !== undefined) message.pattern = pattern;
    return (await this._call(message)).keys;
  }

  /**
   * Subscribes: current values, then {kind: "synced"}, then every change.
   * With a callback, events go to it; without, iterate the subscription
   * with `for await`.
   * @param {string} pattern
   * @param {(event: Event) => void} [callback]
   * @returns {Promise<Subscription>}
   */
  async subscribe(pattern, callback) {
    const sub = new Subscription(this, pattern, callback);
    await this._call({ op: "sub", pattern }, (reply) => {
      // Before the next message is handled: the first event is routed.
      sub.id = reply.sub;
      this._routes.set(reply.sub, sub);
    });
    return sub;
  }

  _unsubscribe(sub) {
    if (sub.id === null) return;
    this._routes.delete(sub.id);
    if (this._ws.readyState === 1) this._ws.send(this._codec.encode({ op: "unsub", sub: sub.id }));
  }

  /**
   * A live local mirror of `pattern`; await `watch.synced()` for the initial state.
   * @param {string} pattern
   * @returns {Promise<Watch>}
   */
  async watch(pattern) {
    const watch = new Watch();
    watch._sub = await this.subscribe(pattern, (event) => watch._apply(event));
    watch._sub.onClose = () => watch._wakeAll();
    return watch;
  }
}

/** A browser does not say why a WebSocket failed: name the likely causes. */
function refusedMessage(url) {
  const origin = globalThis.location?.origin;
  const page = origin && origin !== "null" ? ` (this page: ${origin})` : "";
  return (
    `cannot connect to ${url}: the server is not running there, or it refused the connection. ` +
    `Check the token and that the server allows this origin${page} with --allow-origin`
  );
}

export { JSON_CODEC, MSGPACK };
