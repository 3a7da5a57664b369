// The two wire encodings: MessagePack (binary frames) and JSON (text frames).
import { decode, encode } from "@msgpack/msgpack";

export const MSGPACK = "ipcbus.v1.msgpack";
export const JSON_CODEC = "ipcbus.v1.json";

function mapKeyConverter(key) {
  return typeof key === "string" || typeof key === "number" ? key : JSON.stringify(key);
}

/** @param {string} name a subprotocol */
export function codecFor(name) {
  if (name === MSGPACK) {
    return {
      name,
      // An object property that is undefined is left out, as in JSON.
      encode: (message) => encode(message, { ignoreUndefined: true }),
      // JavaScript objects take only string keys; other MessagePack map
      // keys become their JSON text, as on JSON sessions.
      decode: (data) => decode(new Uint8Array(data), { mapKeyConverter }),
    };
  }
  if (name === JSON_CODEC) {
    return {
      name,
      encode: (message) => JSON.stringify(message),
      decode: (data) => JSON.parse(typeof data === "string" ? data : new TextDecoder().decode(data)),
    };
  }
  throw new TypeError(`unknown codec ${name}`);
}
