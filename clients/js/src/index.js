// ipcbus for JavaScript: see ../README.md.
export { Bus, DEFAULT_URL, ITERATOR_CAPACITY, Subscription, JSON_CODEC, MSGPACK } from "./bus.js";
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
  Unavailable,
  Timeout,
  Unauthorized,
  Forbidden,
} from "./errors.js";
export { discoverToken } from "./auth.js";
