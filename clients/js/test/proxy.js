// A TCP proxy in front of the real server whose connections a test can cut,
// like clients/python/tests/conftest.py `Proxy`. While paused it drops every
// new connection at once, so the client keeps retrying; `attempts` counts
// the connections it was asked for. With `olderServer` it removes the limits
// from the server's hello, as a server from before they were announced.
// While `deaf`, a new connection passes the client's upgrade request on and
// then swallows what the client sends (`swallowed` lists the opcode of each
// chunk, a frame as the client writes them), as a server that has stopped
// answering. While `muted`, what the server sends is dropped, on every
// connection, as on a network that went away without closing anything.
// While `held` (`hold()`), what the server sends waits in the proxy, and
// `unhold()` passes it on: replies come late, not never.
import { EventEmitter } from "node:events";
import { createServer, connect } from "node:net";
import { decode, encode } from "@msgpack/msgpack";

/**
 * @param {number} targetPort
 * @param {{olderServer?: boolean}} [options]
 */
export async function startProxy(targetPort, { olderServer = false } = {}) {
  const pairs = new Set();
  const events = new EventEmitter();
  const proxy = {
    url: "",
    attempts: 0,
    paused: false,
    deaf: false,
    muted: false,
    swallowed: [],
    /** Resolves once `attempts` reaches `n`. */
    attempted(n) {
      return new Promise((resolve) => {
        const check = () => proxy.attempts >= n && (events.off("attempt", check), resolve());
        events.on("attempt", check);
        check();
      });
    },
    /** Resolves once a frame with `opcode` (2: binary, 8: close) is swallowed at or after `from`. */
    swallowedFrame(opcode, from = 0) {
      return new Promise((resolve) => {
        const check = () => proxy.swallowed.indexOf(opcode, from) >= 0 && (events.off("swallowed", check), resolve());
        events.on("swallowed", check);
        check();
      });
    },
    /** Ends every connection at once, both sides. */
    cut() {
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream.destroy();
      }
      pairs.clear();
    },
    pause() {
      proxy.paused = true;
    },
    held: false,
    hold() {
      proxy.held = true;
    },
    unhold() {
      proxy.held = false;
      for (const pair of pairs) {
        for (const chunk of pair.late.splice(0)) pair.client.write(chunk);
      }
    },
    resume() {
      proxy.paused = false;
    },
    close() {
      proxy.cut();
      return new Promise((resolve) => listener.close(resolve));
    },
  };
  const listener = createServer((client) => {
    proxy.attempts += 1;
    events.emit("attempt");
    if (proxy.paused) return client.destroy();
    const upstream = connect(targetPort, "127.0.0.1");
    const pair = { client, upstream, late: [] };
    pairs.add(pair);
    const rewrite = olderServer ? helloWithoutLimits() : (chunk) => chunk;
    let request = proxy.deaf ? "" : null; // the upgrade request, while deaf
    client.on("data", (chunk) => {
      if (request === null) return upstream.write(chunk);
      if (!request.includes("\r\n\r\n")) {
        request += chunk.toString("latin1");
        return upstream.write(chunk);
      }
      proxy.swallowed.push(chunk[0] & 0x0f);
      events.emit("swallowed");
    });
    upstream.on("data", (chunk) => {
      if (proxy.muted) return;
      if (proxy.held) return pair.late.push(rewrite(chunk));
      client.write(rewrite(chunk));
    });
    // Ends are passed on with what was written before them (a Close frame).
    for (const [a, b] of [[client, upstream], [upstream, client]]) {
      a.on("end", () => b.end());
      a.on("error", () => b.end());
      a.on("close", () => pairs.delete(pair));
    }
  });
  await new Promise((resolve) => listener.listen(0, "127.0.0.1", resolve));
  proxy.url = `ws://127.0.0.1:${listener.address().port}/ws`;
  return proxy;
}

/** Rewrites the first WebSocket frame after the HTTP response (the hello) without max_*_bytes. */
function helloWithoutLimits() {
  let seen = Buffer.alloc(0);
  let done = false;
  return (chunk) => {
    if (done) return chunk;
    seen = Buffer.concat([seen, chunk]);
    const at = seen.indexOf("\r\n\r\n") + 4;
    if (at < 4 || seen.length < at + 2) return Buffer.alloc(0);
    let length = seen[at + 1] & 0x7f; // the server's frames are not masked
    let start = at + 2;
    if (length === 126) {
      if (seen.length < at + 4) return Buffer.alloc(0);
      length = seen.readUInt16BE(at + 2);
      start = at + 4;
    }
    if (seen.length < start + length) return Buffer.alloc(0);
    const text = (seen[at] & 0x0f) === 1;
    const body = seen.subarray(start, start + length);
    const hello = text ? JSON.parse(body.toString()) : decode(body);
    delete hello.max_value_bytes;
    delete hello.max_frame_bytes;
    const out = text ? Buffer.from(JSON.stringify(hello)) : Buffer.from(encode(hello));
    const header = out.length < 126 ? [seen[at], out.length] : [seen[at], 126, out.length >> 8, out.length & 0xff];
    done = true;
    return Buffer.concat([seen.subarray(0, at), Buffer.from(header), out, seen.subarray(start + length)]);
  };
}
