// Subscription: a callback target and an async iterator of events that
// outlives reconnects. After a reconnect the server replays the pattern in
// full; the subscription passes on only what changed meanwhile, as the
// Python client does (clients/python/ipcbus/bus.py, Subscription._deliver).

/**
 * What a "val" event of a subscription made with `{meta: true}` says about
 * the write (docs/protocol.md §4); absent fields do not apply.
 * @typedef {{age_ms?: number, persist?: true, ephemeral?: true, ttl_ms?: number}} Meta
 */

/**
 * @typedef {{kind: "val"|"del"|"synced", key?: string, value?: unknown, rev?: number, meta?: Meta}} Event
 */

/** @typedef {{meta?: boolean}} SubscribeOptions */

/** Runs `task` in a later task, as soon as can be (Node: setImmediate, which timers do not delay). */
const soon = globalThis.setImmediate ?? ((task) => setTimeout(task, 0));

/** Events an unread async iterator holds before each key keeps only its newest. */
export const ITERATOR_CAPACITY = 4096;

/**
 * A live subscription. An iterator that is not read keeps at most
 * ITERATOR_CAPACITY events; past that, an event for a key that already has
 * one waiting replaces it (the newest state wins, `skipped` counts the
 * rest), as on the server. It ends only on `close()` or `bus.close()`,
 * never because the connection was lost.
 */
export class Subscription {
  constructor(bus, pattern, callback, { meta = false } = {}) {
    this.pattern = pattern;
    /** Whether its "val" events carry `meta`; kept when it is made again after a reconnect. */
    this.meta = meta;
    this._bus = bus;
    this._callback = callback;
    this._queue = [];
    this._pulls = [];
    this.skipped = 0;
    /** The server's id for it on the current connection; null while down. */
    this.id = null;
    this.closed = false;
    /**
     * What was passed on of each key (key → rev), so that after a reconnect
     * the full replay can be reduced to what changed meanwhile. One entry
     * per key held, so bounded by the server's max_keys.
     * @type {Map<string, number>}
     */
    this._known = new Map();
    /** Keys the replay after a reconnect has named so far; null when not replaying. */
    this._resync = null;
    /** Whether "synced" was passed on (a replay cut off by a disconnect had not). */
    this._synced = false;
  }

  /**
   * Hands the events to `callback` from now on: those that waited (it was
   * made at connect, before anyone took it) first. A program's callback
   * gets them in a later task, once the caller of `subscribe` has the
   * handle (a callback may well close it); `now` is for the client's own
   * (a watch's), which gets them at once.
   */
  _listen(callback, now = false) {
    const start = () => {
      if (this.closed) return;
      this._callback = callback;
      for (const event of this._queue.splice(0)) this._put(event);
    };
    if (now) start();
    else soon(start);
  }

  /** The `sub` request that makes it, on the first connection or a later one. */
  _request() {
    return this.meta ? { op: "sub", pattern: this.pattern, meta: true } : { op: "sub", pattern: this.pattern };
  }

  /** A reconnect replays the pattern from the start. */
  _startResync(storeChanged) {
    if (storeChanged) {
      // Revs of another store say nothing: pass on every value again.
      for (const key of this._known.keys()) this._known.set(key, -1);
    }
    this._resync = new Set();
  }

  /** @param {Event} event */
  _deliver(event) {
    if (this._resync) {
      if (event.kind === "val") {
        this._resync.add(event.key);
        if (this._known.get(event.key) === event.rev) return; // passed on before the connection was lost
      } else if (event.kind === "synced") {
        const seen = this._resync;
        this._resync = null;
        for (const key of [...this._known.keys()]) {
          if (seen.has(key)) continue;
          this._known.delete(key); // deleted while the connection was down
          this._put({ kind: "del", key, rev: 0 });
        }
        if (this._synced) return; // passed on once already
      }
    }
    if (event.kind === "val") this._known.set(event.key, event.rev);
    else if (event.kind === "del") this._known.delete(event.key);
    else if (event.kind === "synced") this._synced = true;
    this._put(event);
  }

  _put(event) {
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
    this._bus._unsubscribe(this);
    this._end();
  }

  /** Ends the iterator and wakes what waits on it, with nothing sent. */
  _end() {
    this.closed = true;
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
