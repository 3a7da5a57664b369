// Bus: a connection to ipcbus over the platform WebSocket (browsers, and
// Node 20 with --experimental-websocket or Node 22+). Requests are promises,
// pipelined and matched to replies by id. The connection is kept up by
// connection.js, as docs/clients.md "The reconnect contract" says: calls
// made while it is down wait, subscriptions and watches survive.
import { JSON_CODEC, MSGPACK, codecFor } from "./codec.js";
import { Connection, IDLE_TIMEOUT_MS, exchange } from "./connection.js";
import { EphemeralKeys, wireTtl } from "./ephemeral.js";
import { ServerError, Timeout, TooLarge, Unavailable, fromWire, refusedSubscriptions } from "./errors.js";
import { byteLength, checkFrame, checkValueSize, limitsOf } from "./limits.js";
import { Subscription } from "./subscription.js";
import { checkValue } from "./value.js";
import { Watch } from "./watch.js";

export const DEFAULT_URL = "ws://127.0.0.1:9099/ws";

/**
 * Calls that may wait for the connection at once. When that many wait, a
 * new call made while the connection is down rejects at once with
 * Unavailable. (Reads that were in flight when it dropped are sent again
 * and do not count against it.)
 */
export const WAITING_CAPACITY = 10000;

/**
 * A client of the bus. It extends EventTarget: a `"state"` event (a
 * CustomEvent, `detail: {state, reason}`) reports each change of `state`:
 * "connecting", "open", "reconnecting" or "closed".
 */
export class Bus extends EventTarget {
  /**
   * Connects and waits for the server's hello.
   *
   * The first connect retries with backoff (0.1 s doubling to 5 s) until
   * `connectTimeout` (default: `timeout`), then rejects with Unavailable;
   * `failFast` makes one attempt. A refused connection rejects at once:
   * in Node with `Unauthorized` (401) or `Forbidden` (403); a browser is not
   * told why, and retries until the timeout like for a server that is down.
   * A lost connection is made again with the same backoff unless
   * `reconnect` is false.
   *
   * The access token goes in the URL as `?token=` (browsers cannot set
   * headers on a WebSocket). Without `token`, and unless `url` has its own
   * `?token=`, Node looks it up at every (re)connect as the server wrote it:
   * `$IPCBUS_TOKEN`, else the token file (`$IPCBUS_TOKEN_FILE`, else
   * `token` in `$IPCBUS_DATA_DIR` or the platform data directory). A
   * browser must be given the token.
   *
   * `subscribe` names patterns to subscribe to in the connect request
   * itself (docs/protocol.md §5.1): their first values arrive right after
   * the server's hello, with no round trip of their own. The first
   * `subscribe(pattern)` or `watch(pattern)` of each (without `meta`) gets
   * that subscription, with what arrived meanwhile, instead of making
   * another; it behaves as any other (replay, "synced", live changes,
   * `close()`, made again after a reconnect). Until then its events wait,
   * as for an unread iterator. A pattern the server refuses rejects the
   * connect at once with BadPattern (more than its max_subs: LimitReached),
   * in Node and in a page whose origin the server allows. A server older
   * than this gets them as `sub` requests instead. A `url` with `sub=`
   * parameters of its own (`?sub=a.%3E`) throws a TypeError before anything
   * is sent: name them with `subscribe`. A parameter named `sub` counts,
   * with or without a `=`; others (`?token=`, `?x=sub`) are kept.
   *
   * @example
   * const bus = await Bus.connect("ws://127.0.0.1:9099/ws", { token, onState: (s, why) => show(s, why) });
   * @example
   * const bus = await Bus.connect(url, { subscribe: ["weather.>"] });
   * const weather = await bus.watch("weather.>"); // the one made at connect: no round trip
   * await weather.synced();
   * @param {string} [url]
   * @param {BusOptions} [options]
   * @returns {Promise<Bus>}
   */
  static async connect(url = DEFAULT_URL, options = {}) {
    const bus = new Bus(url, options);
    await bus._conn.opened;
    return bus;
  }

  /**
   * @typedef {object} BusOptions
   * @property {string} [codec] MSGPACK (default) or JSON_CODEC
   * @property {number} [timeout] each call's timeout in ms (5000), the wait for the connection included
   * @property {number} [connectTimeout] how long the first connect retries, in ms (default: `timeout`)
   * @property {boolean} [failFast] the first connect makes one attempt
   * @property {boolean} [reconnect] reconnect a lost connection (true)
   * @property {number} [idleTimeout] a connection on which nothing arrives for this long, in ms
   *   (45000; the server pings every 10 s, but a page cannot see pings), is probed with a request,
   *   and taken for dead if that gets no reply within `timeout`
   * @property {string} [token] the server's access token
   * @property {(state: string, reason: string) => void} [onState] called at each change of state
   * @property {string[]} [subscribe] patterns to subscribe to in the connect request itself; the
   *   first `subscribe(pattern)` or `watch(pattern)` of each gets that subscription
   */

  /**
   * Starts connecting; prefer `Bus.connect`, which waits for the first open.
   * Calls made before that wait for it.
   * @param {string} url
   * @param {BusOptions} [options]
   */
  constructor(url, options = {}) {
    const { codec = MSGPACK, timeout = 5000, connectTimeout = timeout, failFast = false, reconnect = true, token, onState } = options;
    const { idleTimeout = IDLE_TIMEOUT_MS, subscribe = [] } = options;
    const patterns = namedPatterns(subscribe);
    checkUrl(url);
    if (typeof WebSocket === "undefined") {
      throw new Unavailable("no WebSocket in this runtime: use a browser, Node 22+, or Node 20 with --experimental-websocket");
    }
    super();
    this.url = url;
    this.timeout = timeout;
    /** "connecting", "open", "reconnecting" or "closed". */
    this.state = "connecting";
    /** Why the state is what it is: the lost connection's close, the last error, "closed by the client". */
    this.stateReason = `connecting to ${url}`;
    this._onState = onState;
    this._codec = codecFor(codec);
    this._nextId = 1;
    /** Calls sent on the current connection, by id. */
    this._pending = new Map();
    /** Calls waiting for the connection, in call order (at most WAITING_CAPACITY new ones). */
    this._waiting = new Set();
    /** Subscriptions by their id on the current connection. */
    this._routes = new Map();
    /** Every live subscription, made again after a reconnect. */
    this._subs = new Set();
    this._ephemeral = new EphemeralKeys();
    this._limits = {};
    this._link = null;
    /** The subscriptions of `subscribe`, in order: the first upgrade request names them. */
    this._named = patterns.map((pattern) => this._name(pattern));
    /** Those that no `subscribe` or `watch` took yet, by pattern. */
    this._unclaimed = new Map();
    for (const sub of this._named) this._unclaimed.set(sub.pattern, [...(this._unclaimed.get(sub.pattern) ?? []), sub]);
    const probe = () => this._codec.encode({ id: this._nextId++, op: "keys", pattern: "ipcbus.probe" });
    const how = { codec: this._codec, timeout, connectTimeout, failFast, reconnect, token, idleTimeout, probe, subs: patterns };
    this._conn = new Connection(this, url, how);
  }

  get codec() {
    return this._codec.name;
  }

  /** Closes the client: calls waiting or in flight reject with Unavailable, subscriptions end. */
  close() {
    if (this.state === "closed") return;
    this._conn.close();
    this._shutdown("closed by the client", new Unavailable(`closed: the client of ${this.url} was closed`));
  }

  // -- the connection's steps (connection.js calls these) ---------------

  _setState(state, reason) {
    if (this.state === "closed") return;
    this.state = state;
    this.stateReason = reason;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, reason } }));
    try {
      this._onState?.(state, reason);
    } catch (e) {
      console.error("ipcbus: onState failed", e);
    }
  }

  /**
   * Before a new link is used: the ids of the subscriptions its upgrade
   * request named (`link.made`), then the ephemeral keys set again.
   */
  async _prepare(link, signal) {
    const sameStore = this.store === undefined || link.hello.store === this.store;
    const send = (messages) => exchange(link, this._codec, messages, () => this._nextId++, this.timeout, signal);
    link.made = await this._makeNamed(link, send);
    await this._ephemeral.reassert(send, sameStore);
  }

  /**
   * The ids of the subscriptions named in the upgrade request: 1 to n when
   * the hello says the server made all n (§5.1). A server older than that
   * ignored them (no `subs`): they are asked for with `sub` requests; if it
   * made another number, those are ended first. A refusal throws
   * (BadPattern, LimitReached), which ends the first connect.
   * @returns {Promise<Map<Subscription, number>>}
   */
  async _makeNamed(link, send) {
    const made = new Map();
    if (!link.asked.length) return made;
    const subs = this._named;
    const count = link.hello.subs;
    if (count === subs.length) {
      subs.forEach((sub, i) => made.set(sub, i + 1));
      return made;
    }
    if (Number.isSafeInteger(count) && count > 0) {
      for (let id = 1; id <= Math.min(count, MAX_STRAY_SUBS); id++) link.ws.send(this._codec.encode({ op: "unsub", sub: id }));
    }
    const replies = await send(subs.map((sub) => sub._request()));
    const refused = replies.find((reply) => !reply.ok);
    if (refused) throw refusedSubscriptions(this.url, refused.error);
    subs.forEach((sub, i) => made.set(sub, replies[i].sub));
    return made;
  }

  /** A new link is ready: subscribe again, send what waited, and count as open. */
  _adopt(link) {
    const { hello } = link;
    const storeChanged = this.store !== undefined && hello.store !== this.store;
    this.session = hello.session;
    this.store = hello.store;
    this._limits = limitsOf(hello);
    this._link = link;
    // Bound before any event is read: they may have come with the hello.
    for (const [sub, id] of link.made) this._attach(sub, { sub: id });
    for (const sub of this._subs) if (!link.made.has(sub)) this._resubscribe(sub, storeChanged);
    for (const data of link.early.splice(0)) this._route(data);
    link.ws.onmessage = (m) => {
      if (this._link === link) this._route(m.data);
    };
    const waiting = [...this._waiting];
    this._waiting.clear();
    for (const call of waiting) this._send(call);
    this._setState("open", `connected to ${this.url}`);
  }

  /** The link closed: writes in flight may have been applied; reads wait to be sent again. */
  _lost({ code, reason }, why) {
    this._link = null;
    this._routes.clear();
    for (const sub of this._subs) sub.id = null;
    for (const call of this._pending.values()) {
      if (call.internal) continue; // a resubscription: made again with the next link
      if (code === 1009) {
        // The server refused a frame as too big; which one is not known, so none is resent.
        clearTimeout(call.timer);
        call.reject(new TooLarge("too_large", `frame too big: the server closed the connection (1009 ${reason}); ${call.op} was not applied`));
      } else if (call.write) {
        clearTimeout(call.timer);
        const what = `${call.op} ${JSON.stringify(call.key)}`;
        call.reject(
          new Unavailable(
            `${what}: ${why} before the reply, so it may have been applied (not resent); ` +
              "read the key to see, or write with ifRev, which makes a retry safe",
            { maybeApplied: true },
          ),
        );
      } else {
        this._waiting.add(call);
      }
    }
    this._pending.clear();
  }

  /** The client is closed for good: everything waiting fails with `error`. */
  _shutdown(reason, error) {
    if (this.state === "closed") return;
    this._link = null;
    for (const call of [...this._pending.values(), ...this._waiting]) {
      clearTimeout(call.timer);
      call.reject(error);
    }
    this._pending.clear();
    this._waiting.clear();
    this._routes.clear();
    const subs = [...this._subs];
    this._subs.clear();
    for (const sub of this._named) sub._made.reject(error); // for a claim that waits for it
    for (const sub of subs) sub._end();
    this._setState("closed", reason);
  }

  // -- requests ----------------------------------------------------------

  /**
   * Sends `message` now or when the connection is back; resolves to the
   * reply. `write`: a set or del, never sent twice. `onSend` runs when it is
   * sent, which may be never (it timed out waiting, or the client closed).
   */
  _call(message, { write = false, onSend, onReply, value } = {}) {
    if (this.state === "closed") return Promise.reject(new Unavailable(`closed: ${this.stateReason}`));
    message.id = this._nextId++;
    const data = this._codec.encode(message);
    const bytes = byteLength(data);
    try {
      if (value !== undefined) checkValueSize(value, bytes, this._limits);
      checkFrame(message.op, bytes, this._limits);
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise((resolve, reject) => {
      const call = { id: message.id, op: message.op, key: message.key, data, bytes, write, onSend, onReply, resolve, reject };
      if (!this._link && this._waiting.size >= WAITING_CAPACITY) {
        return reject(new Unavailable(`${call.op}: ${WAITING_CAPACITY} calls already wait for the connection to ${this.url} (${this.stateReason})`));
      }
      call.timer = setTimeout(() => this._expire(call), this.timeout);
      if (this._link) this._send(call);
      else this._waiting.add(call);
    });
  }

  _send(call) {
    // Closed, and the client has not handled it yet: a write sent now would
    // be lost (and reported as maybe applied) although the connection was
    // already gone when it was made. It waits for the next one instead.
    if (this._link.ws.readyState !== WebSocket.OPEN) return this._waiting.add(call);
    try {
      checkFrame(call.op, call.bytes, this._limits); // the new server's limits may be lower
    } catch (e) {
      clearTimeout(call.timer);
      return call.reject(e);
    }
    this._pending.set(call.id, call);
    call.onSend?.();
    this._link.ws.send(call.data);
  }

  _expire(call) {
    if (this._pending.delete(call.id)) {
      if (call.write) {
        // It was sent: the server may have applied it.
        const what = `${call.op} ${JSON.stringify(call.key)}`;
        return call.reject(
          new Timeout(
            `no reply to ${what} within ${this.timeout} ms, so it may have been applied; ` +
              "read the key to see, or write with ifRev, which makes a retry safe",
            { maybeApplied: true },
          ),
        );
      }
      call.reject(new Timeout(`no reply to ${call.op} within ${this.timeout} ms`));
    } else if (this._waiting.delete(call)) {
      call.reject(new Unavailable(`${call.op}: not connected to ${this.url} within ${this.timeout} ms (${this.stateReason})`));
    }
  }

  _route(data) {
    let msg;
    try {
      msg = this._codec.decode(data);
    } catch (e) {
      return console.warn("ipcbus: undecodable message from the server", e);
    }
    if (msg.id !== undefined) {
      const call = this._pending.get(msg.id);
      if (!call) {
        // A `sub` whose caller timed out: end it, or the server keeps sending.
        if (msg.ok && msg.sub !== undefined) this._unsub(msg.sub);
        return;
      }
      this._pending.delete(msg.id);
      clearTimeout(call.timer);
      if (!msg.ok) return call.reject(fromWire(msg.error));
      call.onReply?.(msg);
      return call.resolve(msg);
    }
    if (msg.ev === "error") return console.warn("ipcbus: server reported", msg.error);
    const sub = this._routes.get(msg.sub);
    if (!sub || sub.closed) return;
    const event = { kind: msg.ev, key: msg.key, value: msg.value, rev: msg.rev };
    if (msg.meta !== undefined) event.meta = msg.meta;
    sub._deliver(event);
  }

  _unsub(id) {
    this._link?.ws.send(this._codec.encode({ op: "unsub", sub: id }));
  }

  // -- the API -----------------------------------------------------------

  /**
   * Sets `key`; resolves to the rev.
   * - `ifRev`: a compare-and-set (0: only if absent), else RevMismatch;
   * - `persist`: the server writes the value to disk before it answers; it
   *   survives a restart of the server;
   * - `ephemeral`: the server deletes the key when this connection ends;
   *   after a reconnect this client sets it again (its last value, what is
   *   left of `ttlMs`) before it counts as open, unless another client
   *   wrote it meanwhile. A `delete` or a non-ephemeral `set` of the key ends that;
   * - `ttlMs`: the server deletes the key after this many ms (at least 1).
   *
   * A value over the server's max_value_bytes is TooLarge, and nothing is
   * sent. If the connection drops before the reply, this rejects with
   * Unavailable and `.maybeApplied` (it is not resent).
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
    if (ttlMs !== undefined) message.ttl_ms = wireTtl(ttlMs);
    // The ephemeral bookkeeping changes when the write is sent, in the order
    // writes are sent: one that waits for the connection is not set again by
    // the reconnect (it is sent after it), nor ever if it gives up waiting.
    if (!ephemeral) {
      const onSend = () => this._ephemeral.forget(key);
      return (await this._call(message, { write: true, value, onSend })).rev;
    }
    const copy = structuredClone(value); // as it is now, like the request
    let sent; // {claim, previous} once sent
    const onSend = () => (sent = this._ephemeral.begin(key, copy, ttlMs));
    const onReply = (reply) => this._ephemeral.acked(key, sent.claim, reply.rev);
    try {
      return (await this._call(message, { write: true, value, onSend, onReply })).rev;
    } catch (e) {
      // Refused: the key is as it was. (Lost or timed out: it may be set; keep setting it.)
      if (sent && e instanceof ServerError) this._ephemeral.refused(key, sent.claim, sent.previous);
      throw e;
    }
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
   * Deletes `key`; resolves to the rev of the deletion. Like `set`, it
   * rejects with `.maybeApplied` if the connection drops before the reply.
   * @param {string} key
   * @param {{ifRev?: number}} [options]
   * @returns {Promise<number>}
   */
  async delete(key, { ifRev } = {}) {
    const message = { op: "del", key };
    if (ifRev !== undefined) message.if_rev = ifRev;
    return (await this._call(message, { write: true, onSend: () => this._ephemeral.forget(key) })).rev;
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
   * with `for await`. After a reconnect it passes on only what changed
   * while the connection was down: new values, and `{kind: "del", key,
   * rev: 0}` for keys that went away; no second "synced".
   *
   * With `{meta: true}` each "val" event has `meta` as the server sent it
   * (docs/protocol.md §4): `age_ms` (absent when the server does not know,
   * as for a value restored from its data file), and only when they apply
   * `persist: true`, `ephemeral: true` and `ttl_ms` (what was left when it
   * was sent). A server older than `meta` sends none: no `meta` means "not
   * known". The options can come second when there is no callback.
   *
   * The first call for a pattern named in `Bus.connect`'s `subscribe`
   * (without `meta`) gets the subscription made at connect, with the events
   * that came meanwhile (a callback gets them in the next task), and sends
   * nothing.
   * @example
   * await bus.subscribe("svc.>", (ev) => console.log(ev.key, ev.meta?.ttl_ms), { meta: true });
   * @param {string} pattern
   * @param {((event: import("./subscription.js").Event) => void) | import("./subscription.js").SubscribeOptions} [callback]
   * @param {import("./subscription.js").SubscribeOptions} [options]
   * @returns {Promise<Subscription>}
   */
  async subscribe(pattern, callback, options = {}) {
    if (callback !== null && typeof callback === "object") [callback, options] = [undefined, callback];
    const named = options.meta ? undefined : await this._claim(pattern);
    if (named) {
      if (callback) named._listen(callback, options[INTERNAL] === true);
      return named;
    }
    const sub = new Subscription(this, pattern, callback, { meta: Boolean(options.meta) });
    // Before the next message is handled: the first event is routed.
    await this._call(sub._request(), { onReply: (reply) => this._attach(sub, reply) });
    return sub;
  }

  _attach(sub, reply) {
    if (sub.closed) return this._unsub(reply.sub); // closed while its resubscription was under way
    sub.id = reply.sub;
    this._routes.set(sub.id, sub);
    this._subs.add(sub);
    sub._made?.resolve();
  }

  /**
   * A subscription of the `subscribe` option: one of `_subs` from the
   * start, so that the first connection makes it, and every later one.
   */
  _name(pattern) {
    const sub = new Subscription(this, pattern);
    let settle;
    const promise = new Promise((resolve, reject) => (settle = { resolve, reject }));
    promise.catch(() => {});
    sub._made = { promise, ...settle };
    this._subs.add(sub);
    return sub;
  }

  /**
   * The first subscription of the `subscribe` option for `pattern` that
   * nobody took yet, once the server has made it (waiting up to `timeout`,
   * as `subscribe` waits for its reply); undefined if there is none.
   * @returns {Promise<Subscription|undefined>}
   */
  async _claim(pattern) {
    const waiting = this._unclaimed.get(pattern);
    const sub = waiting?.shift();
    if (!sub) return undefined;
    if (!waiting.length) this._unclaimed.delete(pattern);
    let timer;
    const late = new Promise((_, reject) => {
      const error = () => new Unavailable(`sub: not connected to ${this.url} within ${this.timeout} ms (${this.stateReason})`);
      timer = setTimeout(() => reject(error()), this.timeout);
    });
    try {
      await Promise.race([sub._made.promise, late]);
    } catch (e) {
      if (!sub.closed) this._unclaimed.set(pattern, [sub, ...(this._unclaimed.get(pattern) ?? [])]); // for the next call
      throw e;
    } finally {
      clearTimeout(timer);
    }
    return sub;
  }

  /** Makes `sub` again on a new link; the reply routes itself. */
  _resubscribe(sub, storeChanged) {
    sub._startResync(storeChanged);
    const id = this._nextId++;
    const warn = (e) => console.warn(`ipcbus: subscribing to ${sub.pattern} again failed: ${e.message}`);
    this._pending.set(id, { id, op: "sub", internal: true, onReply: (r) => this._attach(sub, r), resolve: () => {}, reject: warn });
    this._link.ws.send(this._codec.encode({ ...sub._request(), id }));
  }

  _unsubscribe(sub) {
    this._subs.delete(sub);
    if (sub.id === null) return;
    this._routes.delete(sub.id);
    this._unsub(sub.id);
    sub.id = null;
  }

  /**
   * A live local mirror of `pattern`; await `watch.synced()` for the
   * initial state. It stays correct across reconnects. The first watch (or
   * subscribe) of a pattern named in `Bus.connect`'s `subscribe` mirrors
   * the subscription made at connect, with what came meanwhile.
   * @param {string} pattern
   * @returns {Promise<Watch>}
   */
  async watch(pattern) {
    const watch = new Watch();
    watch._sub = await this.subscribe(pattern, (event) => watch._apply(event), { [INTERNAL]: true });
    watch._sub.onClose = () => watch._wakeAll();
    return watch;
  }
}

/** In `subscribe`'s options: the callback is the client's own (a watch's), which may run at once. */
const INTERNAL = Symbol("internal");

/**
 * A server that made another number of the subscriptions named at connect
 * than it was asked for has those (ids 1 to n) ended before they are asked
 * for again: at most this many.
 */
const MAX_STRAY_SUBS = 10000;

/** The `subscribe` option, checked: a list of patterns (strings). */
function namedPatterns(subscribe) {
  if (!Array.isArray(subscribe)) {
    throw new TypeError(`subscribe is a list of patterns, as ["weather.>"], not ${JSON.stringify(subscribe)}`);
  }
  for (const pattern of subscribe) {
    if (typeof pattern !== "string") throw new TypeError(`subscribe: a pattern is a string, not ${JSON.stringify(pattern) ?? String(pattern)}`);
  }
  return [...subscribe];
}

/**
 * The `sub` parameters `url` has of its own: each `&`-separated pair of the
 * query whose name, up to its first `=`, is `sub`, as the server reads it,
 * or once decoded (adding the token or `subscribe` re-encodes the query:
 * `s%75b=x` would become `sub=x`). A bare `sub` counts too, as in the other
 * clients: it would be sent as `sub=`, an empty pattern. A URL that cannot
 * be parsed has none here: the connect fails on it.
 * @param {string} url
 * @returns {string[]}
 */
function ownSubs(url) {
  let query;
  try {
    query = new URL(url, globalThis.location?.href).search.slice(1);
  } catch {
    return [];
  }
  return query.split("&").filter((pair) => new URLSearchParams(pair).has("sub"));
}

/**
 * A URL with `sub` parameters of its own is refused before anything is
 * sent: the subscriptions it would make are not the client's, which could
 * neither route, count nor make them again.
 * @param {string} url
 */
function checkUrl(url) {
  const own = ownSubs(url);
  if (own.length) {
    throw new TypeError(`the URL has its own sub= parameters (${own.join("&")}); name subscriptions with the subscribe option instead`);
  }
}

export { JSON_CODEC, MSGPACK, Subscription };
