// Errors of the ipcbus client. A refused request is a ServerError whose
// `code` is the protocol's error code; subclasses name the common ones.

export class IpcbusError extends Error {}

/**
 * The bus cannot be reached, the connection was lost, or the client is
 * closed. `maybeApplied` is true for a `set` or `delete` that was sent but
 * not answered when the connection dropped: the server may have applied it.
 * It is not resent; a write with `ifRev` can be retried safely.
 */
export class Unavailable extends IpcbusError {
  /**
   * @param {string} message
   * @param {{maybeApplied?: boolean}} [options]
   */
  constructor(message, { maybeApplied = false } = {}) {
    super(message);
    this.maybeApplied = maybeApplied;
  }
}

/**
 * No reply came within the client's timeout. `maybeApplied` is true for a
 * `set` or `delete` that was sent: the server may have applied it (as for
 * Unavailable); a late reply is dropped.
 */
export class Timeout extends IpcbusError {
  /**
   * @param {string} message
   * @param {{maybeApplied?: boolean}} [options]
   */
  constructor(message, { maybeApplied = false } = {}) {
    super(message);
    this.maybeApplied = maybeApplied;
  }
}

/**
 * The server refused the connection with HTTP 401: no token, or a wrong one.
 * Only Node can tell: a browser sees a failed connect (Unavailable).
 */
export class Unauthorized extends IpcbusError {
  /**
   * @param {string} message
   * @param {string} [tokenFile] the token file the client tried
   */
  constructor(message, tokenFile) {
    super(message);
    this.tokenFile = tokenFile;
  }
}

/**
 * The server refused the connection with HTTP 403: the request's Origin is
 * not allowed. Only Node can tell: a browser sees a failed connect.
 */
export class Forbidden extends IpcbusError {}

/** The server refused a request. */
export class ServerError extends IpcbusError {
  /**
   * @param {string} code protocol error code, e.g. "not_found"
   * @param {string} msg the server's explanation
   * @param {number} [rev] the key's current rev, on "rev_mismatch"
   */
  constructor(code, msg, rev) {
    super(`${code}: ${msg}`);
    this.code = code;
    this.rev = rev;
  }
}

export class NotFound extends ServerError {}
export class RevMismatch extends ServerError {}
export class BadKey extends ServerError {}
export class BadPattern extends ServerError {}
export class TooLarge extends ServerError {}
export class LimitReached extends ServerError {}

/**
 * A server with a backplane (docs/scaling.md) could not get the write
 * confirmed by its shared store in time: it may or may not have been
 * applied, so `maybeApplied` is true, as on an Unavailable for a write lost
 * in a disconnect.
 */
export class StoreUnavailable extends ServerError {
  constructor(code, msg, rev) {
    super(code, msg, rev);
    this.maybeApplied = true;
  }
}

const BY_CODE = {
  not_found: NotFound,
  rev_mismatch: RevMismatch,
  bad_key: BadKey,
  bad_pattern: BadPattern,
  too_large: TooLarge,
  limit: LimitReached,
  unavailable: StoreUnavailable,
};

/** The error for an `error` map from the server. */
export function fromWire(error = {}) {
  const Cls = BY_CODE[error.code] ?? ServerError;
  return new Cls(String(error.code ?? "internal"), String(error.msg ?? ""), error.rev);
}

/**
 * The server refused the subscriptions named at connect (`subscribe`), as
 * the upgrade's HTTP 400 or 429 (docs/protocol.md §5.1) or the reply to one
 * of their `sub` requests: BadPattern, LimitReached (over max_subs), ...
 * @param {string} url
 * @param {{code?: string, msg?: string}} error the server's `error` map
 */
export function refusedSubscriptions(url, error = {}) {
  const msg = `${url} refused the subscriptions named at connect (the subscribe option): ${error.msg ?? ""}`;
  return fromWire({ code: error.code, msg });
}
