// The server's limits, as its hello announces them (protocol.md §2.1):
// a request over them is refused here with TooLarge before it is sent, so
// the connection stays up (a frame over max_frame_bytes would make the
// server close it with 1009).
import { encode } from "@msgpack/msgpack";
import { TooLarge } from "./errors.js";

/**
 * @typedef {{maxValueBytes?: number, maxFrameBytes?: number}} Limits
 * Undefined where the server announced nothing (an older server).
 */

/** @returns {Limits} */
export function limitsOf(hello) {
  const n = (v) => (typeof v === "number" && v > 0 ? v : undefined);
  return { maxValueBytes: n(hello.max_value_bytes), maxFrameBytes: n(hello.max_frame_bytes) };
}

/** The size on the wire of an encoded message (bytes, or text sent as UTF-8). */
export function byteLength(data) {
  return typeof data === "string" ? new TextEncoder().encode(data).byteLength : data.byteLength;
}

/**
 * Throws TooLarge if the frame is over max_frame_bytes.
 * @param {string} op
 * @param {number} bytes the encoded request
 * @param {Limits} limits
 */
export function checkFrame(op, bytes, limits) {
  if (limits.maxFrameBytes !== undefined && bytes > limits.maxFrameBytes) {
    throw new TooLarge("too_large", `${op} request of ${bytes} bytes exceeds max_frame_bytes (${limits.maxFrameBytes}); nothing was sent`);
  }
}

/**
 * Throws TooLarge if a `set` value is over max_value_bytes. The server
 * measures the value's MessagePack encoding, on JSON sessions too (§10.1).
 * @param {unknown} value
 * @param {number} frameBytes the encoded request, which holds the value
 * @param {Limits} limits
 */
export function checkValueSize(value, frameBytes, limits) {
  const max = limits.maxValueBytes;
  // A JSON text is at most about 3 times shorter than its MessagePack form
  // (the float 1.5 is 3 characters, 9 bytes), so smaller frames need no
  // second encoding.
  if (max === undefined || frameBytes * 3 <= max) return;
  const bytes = encode(value, { ignoreUndefined: true }).byteLength;
  if (bytes > max) {
    throw new TooLarge("too_large", `value of ${bytes} bytes exceeds max_value_bytes (${max}); nothing was sent`);
  }
}
