// What a value may be: data that both codecs carry the same way. Checked
// before a `set` is sent, so that a value neither codec can carry, or one
// a codec would silently change (a Set or Map sent as {}, a Date as a
// string, a function dropped), is a TypeError naming it and nothing is
// sent; the connection stays up.

/** Nesting deeper than this is refused (the server's own limit is lower). */
const MAX_DEPTH = 512;

function describe(value) {
  if (value === null) return "null";
  if (typeof value !== "object") return typeof value;
  return value.constructor?.name ?? "object";
}

/**
 * Throws a TypeError naming the first part of `value` that is not data:
 * null, booleans, finite numbers, strings, arrays and plain objects, and
 * Uint8Array bytes when `binary` (MessagePack). An object property that is
 * `undefined` is left out, as JSON.stringify does; `undefined` elsewhere
 * is refused.
 * @param {unknown} value
 * @param {boolean} binary
 */
export function checkValue(value, binary) {
  const path = [];
  const open = new Set();
  const walk = (v, depth) => {
    const where = () => (path.length ? ` at ${path.join("")}` : "");
    switch (typeof v) {
      case "boolean":
      case "string":
        return;
      case "number":
        if (!Number.isFinite(v)) throw new TypeError(`${v}${where()} is not a finite number, which JSON and the bus carry`);
        return;
      case "object":
        break;
      default:
        throw new TypeError(`${v === undefined ? "undefined" : `a ${typeof v}`}${where()} cannot be sent: values are null, booleans, numbers, strings, arrays and plain objects`);
    }
    if (v === null) return;
    if (v instanceof Uint8Array && binary) return;
    if (depth > MAX_DEPTH) throw new TypeError(`the value nests deeper than ${MAX_DEPTH} levels`);
    if (open.has(v)) throw new TypeError(`the value refers to itself${where()}`);
    const proto = Object.getPrototypeOf(v);
    if (Array.isArray(v)) {
      open.add(v);
      v.forEach((item, i) => {
        path.push(`[${i}]`);
        walk(item, depth + 1);
        path.pop();
      });
      open.delete(v);
      return;
    }
    if (proto !== Object.prototype && proto !== null) {
      const hint = v instanceof Uint8Array ? " (bytes need the MessagePack codec)" : "";
      throw new TypeError(`a ${describe(v)}${where()} cannot be sent${hint}: values are null, booleans, numbers, strings, arrays and plain objects`);
    }
    open.add(v);
    for (const [k, item] of Object.entries(v)) {
      if (item === undefined) continue;
      path.push(`.${k}`);
      walk(item, depth + 1);
      path.pop();
    }
    open.delete(v);
  };
  walk(value, 0);
}
