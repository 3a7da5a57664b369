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

/** "3 s", "2 min", "5 h", "1 d": a span of whole seconds. */
function span(s) {
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

/** "3 s", "2 min", "5 h" since `ms` (a Date.now() time); "" if unknown. */
export function age(ms, now = Date.now()) {
  if (!ms) return "";
  return span(Math.max(0, Math.round((now - ms) / 1000)));
}

/** What is left until `ms` (a Date.now() time), counted down: "12 s", "0 s" when due. */
export function left(ms, now = Date.now()) {
  return span(Math.max(0, Math.ceil((ms - now) / 1000)));
}

/**
 * A key's entry from a subscription event, received at `now`: the times of
 * its `meta` (protocol.md §4) turned into this page's clock. Without `meta`
 * (a server older than it) a live value's age is counted from now, a
 * replayed one's is unknown (0).
 */
export function entryOf(ev, now, live) {
  const meta = ev.meta;
  const known = meta?.age_ms !== undefined;
  return {
    key: ev.key,
    value: ev.value,
    rev: ev.rev,
    meta: meta !== undefined,
    changed: known ? now - meta.age_ms : live ? now : 0,
    // Highlighted: changes seen live, not the replay.
    flashed: live ? now : 0,
    expires: meta?.ttl_ms !== undefined ? now + meta.ttl_ms : 0,
    persist: meta?.persist === true,
    ephemeral: meta?.ephemeral === true,
  };
}

/** Parses what the user typed as JSON; throws a SyntaxError that says so. */
export function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(`not JSON (strings need quotes: "text"): ${e.message}`);
  }
}
