// ipcbus for JavaScript: see ../README.md.
export { Bus, DEFAULT_URL, WAITING_CAPACITY, JSON_CODEC, MSGPACK } from "./bus.js";
export { ITERATOR_CAPACITY, Subscription } from "./subscription.js";
export { BACKOFF_FIRST_MS, BACKOFF_MAX_MS } from "./connection.js";
export { Watch } from "./watch.js";
export {
  IpcbusError,
  ServerError,
  NotFound,
  RevMismatch,
  BadKey,
  BadPattern,
  TooLarge,
  LimitReached,
  StoreUnavailable,
  Unavailable,
  Timeout,
  Unauthorized,
  Forbidden,
} from "./errors.js";
export { discoverToken } from "./auth.js";
