// How the dashboard shows values: JSON, binary (MessagePack bin) as hex. Text only.

/** Bytes as hex pairs, e.g. "0a ff 10". */
export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

// JSON.stringify calls toJSON/replacers; bytes anywhere in a value become their hex.
const replacer = (_, v) => (v instanceof Uint8Array ? `<bytes ${hex(v)}>` : v);

/** The value as pretty JSON (binary as hex), for the detail panel. */
export function pretty(value) {
  if (value instanceof Uint8Array) return `<bytes ${hex(value)}>`;
  return JSON.stringify(value, replacer, 2);
}

/** One line, cut to `max` characters, for a row. */
export function preview(value, max = 160) {
  const text = value instanceof Uint8Array ? `<bytes ${hex(value)}>` : JSON.stringify(value, replacer);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** "3 s", "2 min", "5 h" since `ms` (a Date.now() time); "" if unknown. */
export function age(ms, now = Date.now()) {
  if (!ms) return "";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

/** Parses what the user typed as JSON; throws a SyntaxError that says so. */
export function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(`not JSON (strings need quotes: "text"): ${e.message}`);
  }
}
