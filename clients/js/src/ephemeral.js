// The ephemeral keys a Bus set, so that it can set them again after a
// reconnect: the server deletes a connection's ephemeral keys when that
// connection ends, but to the program that set them, nothing ended.
//
// The write after a reconnect is conditional: it happens only if the key
// has no value (the server deleted it, or restarted), or still holds this
// Bus's own last write (the server has not yet noticed that the old
// connection is gone; the new write takes the key over). If another client
// wrote the key meanwhile, it is left alone and forgotten. The same rules
// as the Python client (clients/python/ipcbus/_ephemeral.py).

/** The largest `ttl_ms` the protocol accepts. */
export const MAX_TTL_MS = 2 ** 53 - 1;

/** A `ttlMs` as the wire's `ttl_ms`: a whole number, at least 1. */
export function wireTtl(ttlMs) {
  if (typeof ttlMs !== "number" || !(ttlMs >= 0)) throw new RangeError(`ttlMs must be a number >= 0, not ${ttlMs}`);
  return Math.min(Math.max(1, Math.round(ttlMs)), MAX_TTL_MS);
}

/** One ephemeral write: what to write again, and what the server said. */
class Claim {
  constructor(value, ttlMs) {
    this.value = value;
    /** The rev of the write once acknowledged; null until then. */
    this.rev = null;
    /** When a ttl runs out (performance.now()), or null. */
    this.deadline = ttlMs === undefined ? null : performance.now() + ttlMs;
  }
}

/** key → the last ephemeral value this Bus asked for. */
export class EphemeralKeys {
  constructor() {
    /** @type {Map<string, Claim>} */
    this._claims = new Map();
  }

  /**
   * Records an ephemeral set as it is sent (`value`: a copy the program
   * cannot change); returns it and the claim it replaces (to put back if
   * the server refuses the write).
   */
  begin(key, value, ttlMs) {
    const claim = new Claim(value, ttlMs);
    const previous = this._claims.get(key);
    this._claims.set(key, claim);
    return { claim, previous };
  }

  acked(key, claim, rev) {
    if (this._claims.get(key) === claim) claim.rev = rev;
  }

  /** The server refused the write: the key is as it was. */
  refused(key, claim, previous) {
    if (this._claims.get(key) !== claim) return;
    if (previous === undefined) this._claims.delete(key);
    else this._claims.set(key, previous);
  }

  /**
   * This Bus deleted the key or set it non-ephemeral (or, with `claim`,
   * that claim cannot be restored).
   */
  forget(key, claim) {
    if (claim === undefined || this._claims.get(key) === claim) this._claims.delete(key);
  }

  keys() {
    return [...this._claims.keys()].sort();
  }

  /**
   * Writes every claim again on a new connection. `exchange(messages)`
   * sends requests and resolves to their replies in order; it rejects if
   * the connection fails, and then nothing is forgotten.
   * @param {(messages: object[]) => Promise<object[]>} exchange
   * @param {boolean} sameStore whether the server still has the store the revs came from
   */
  async reassert(exchange, sameStore) {
    const now = performance.now();
    const roundOne = [];
    for (const [key, claim] of this._claims) {
      const message = { op: "set", key, value: claim.value, ephemeral: true, if_rev: 0 };
      if (claim.deadline !== null) {
        const left = claim.deadline - now;
        if (left <= 0) {
          this.forget(key, claim); // expired meanwhile, as it would have anyway
          continue;
        }
        message.ttl_ms = wireTtl(left);
      }
      roundOne.push({ key, claim, message });
    }
    const roundTwo = [];
    const replies = await exchange(roundOne.map((r) => r.message));
    roundOne.forEach(({ key, claim, message }, i) => {
      const reply = replies[i];
      const error = reply.error ?? {};
      // The old connection's write is still there: take it over.
      const ours = sameStore && claim.rev !== null && error.rev === claim.rev;
      if (!reply.ok && error.code === "rev_mismatch" && ours) {
        roundTwo.push({ key, claim, message: { ...message, if_rev: claim.rev } });
      } else {
        this._settle(key, claim, reply);
      }
    });
    const second = await exchange(roundTwo.map((r) => r.message));
    roundTwo.forEach(({ key, claim }, i) => this._settle(key, claim, second[i]));
  }

  _settle(key, claim, reply) {
    if (reply.ok) return this.acked(key, claim, reply.rev);
    const error = reply.error ?? {};
    console.warn(`ipcbus: ephemeral key ${key} not set again after reconnecting (${error.code}: ${error.msg}); forgetting it`);
    this.forget(key, claim);
  }
}
