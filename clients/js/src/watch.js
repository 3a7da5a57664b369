// Watch: a local mirror of a pattern, kept current by push.
import { Unavailable } from "./errors.js";

/** A read-only live map of every key matching a pattern. Reads are local. */
export class Watch {
  constructor() {
    /** @type {Map<string, {value: unknown, rev: number}>} */
    this.entries = new Map();
    this.version = 0;
    this._synced = false;
    this._waiters = [];
  }

  /** @param {{kind: string, key?: string, value?: unknown, rev?: number}} event */
  _apply(event) {
    if (event.kind === "val") this.entries.set(event.key, { value: event.value, rev: event.rev });
    else if (event.kind === "del") this.entries.delete(event.key);
    else if (event.kind === "synced") this._synced = true;
    this.version += 1;
    this._wakeAll();
  }

  /** The value of `key`, or undefined. */
  get(key) {
    return this.entries.get(key)?.value;
  }

  has(key) {
    return this.entries.has(key);
  }

  /** The keys present, sorted. */
  keys() {
    return [...this.entries.keys()].sort();
  }

  /** Resolves once the initial state has arrived; rejects if the watch ends first. */
  async synced() {
    while (!this._synced) {
      if (this._sub?.closed) throw new Unavailable("the watch ended before it was synced");
      await this.changed();
    }
  }

  /** Resolves at the next change applied after this call, or when the watch ends. */
  changed() {
    return new Promise((resolve) => this._waiters.push(resolve));
  }

  /** Ends the watch. */
  close() {
    this._sub?.close();
    this._wakeAll();
  }

  _wakeAll() {
    const waiters = this._waiters;
    this._waiters = [];
    for (const wake of waiters) wake();
  }
}
