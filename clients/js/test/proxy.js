// A TCP proxy in front of the real server whose connections a test can cut,
// like clients/python/tests/conftest.py `Proxy`. While paused it drops every
// new connection at once, so the client keeps retrying; `attempts` counts
// the connections it was asked for. With `olderServer` it is a server from
// before the limits and the subscriptions in the upgrade request (protocol.md
// §2.1, §5.1): it removes the `sub` parameters from the upgrade request and
// `max_*_bytes` and `subs` from the hello; `hello` rewrites the hello as it
// likes. `requests` lists the request line of every connection as it came
// from the client, and `sent` every message the client sent (decoded); both
// with `conn`, the connection's number (`attempts` when it came).
// While `deaf`, a new connection passes the client's upgrade request on and
// then swallows what the client sends (`swallowed` lists the opcode of each
// chunk, a frame as the client writes them), as a server that has stopped
// answering. While `muted`, what the server sends is dropped, on every
// connection, as on a network that went away without closing anything.
// While `held` (`hold()`), what the server sends waits in the proxy, and
// `unhold()` passes it on, in one write per connection: replies come late,
// not never, and together.
import { EventEmitter } from "node:events";
import { createServer, connect } from "node:net";
import { decode, encode } from "@msgpack/msgpack";

/**
 * @param {number} targetPort
 * @param {{olderServer?: boolean, hello?: (hello: object) => void}} [options]
 */
export async function startProxy(targetPort, { olderServer = false, hello } = {}) {
  const pairs = new Set();
  const events = new EventEmitter();
  const proxy = {
    url: "",
    attempts: 0,
    paused: false,
    deaf: false,
    muted: false,
    swallowed: [],
    /** @type {Array<{conn: number, line: string}>} */
    requests: [],
    /** @type {Array<{conn: number, message: object}>} */
    sent: [],
    /** Resolves once `match` is true of what the server sent that waits while held (all connections). */
    holding(match) {
      return new Promise((resolve) => {
        const check = () => match(Buffer.concat([...pairs].flatMap((pair) => pair.late))) && (events.off("held", check), resolve());
        events.on("held", check);
        check();
      });
    },
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
        if (pair.late.length) pair.client.write(Buffer.concat(pair.late.splice(0)));
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
    const older = (h) => {
      delete h.max_value_bytes;
      delete h.max_frame_bytes;
      delete h.subs;
    };
    const rewrite = olderServer || hello ? rewriteHello(olderServer ? older : hello) : (chunk) => chunk;
    const deaf = proxy.deaf;
    const conn = proxy.attempts;
    const frames = clientFrames((message) => proxy.sent.push({ conn, message }));
    let head = Buffer.alloc(0); // the upgrade request, until it is whole
    client.on("data", (chunk) => {
      if (head !== null) {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) return;
        let request = head.subarray(0, end + 4).toString("latin1");
        chunk = head.subarray(end + 4);
        head = null;
        proxy.requests.push({ conn, line: request.slice(0, request.indexOf("\r\n")) });
        if (olderServer) request = request.replace(/^(\S+ )(\S+)/, (_, method, target) => method + withoutSubs(target));
        upstream.write(Buffer.from(request, "latin1"));
        if (!chunk.length) return;
      }
      if (!deaf) {
        frames(chunk);
        return upstream.write(chunk);
      }
      proxy.swallowed.push(chunk[0] & 0x0f);
      events.emit("swallowed");
    });
    upstream.on("data", (chunk) => {
      if (proxy.muted) return;
      if (proxy.held) {
        pair.late.push(rewrite(chunk));
        return events.emit("held");
      }
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

/** A request target without its `sub` parameters. */
function withoutSubs(target) {
  const url = new URL(target, "http://proxy");
  url.searchParams.delete("sub");
  return url.pathname + url.search;
}

/**
 * Reads the client's side of a connection after its upgrade request: masked
 * frames. Calls `onMessage` with each text (JSON) or binary (MessagePack)
 * message, decoded.
 */
function clientFrames(onMessage) {
  let seen = Buffer.alloc(0);
  let parts = [];
  return (chunk) => {
    seen = Buffer.concat([seen, chunk]);
    for (;;) {
      if (seen.length < 2) return;
      let length = seen[1] & 0x7f;
      let at = 2;
      if (length === 126) {
        if (seen.length < 4) return;
        length = seen.readUInt16BE(2);
        at = 4;
      } else if (length === 127) {
        if (seen.length < 10) return;
        length = Number(seen.readBigUInt64BE(2));
        at = 10;
      }
      if (seen.length < at + 4 + length) return;
      const mask = seen.subarray(at, at + 4);
      const payload = Buffer.from(seen.subarray(at + 4, at + 4 + length));
      for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4];
      const [fin, opcode] = [seen[0] & 0x80, seen[0] & 0x0f];
      seen = seen.subarray(at + 4 + length);
      if (opcode === 1 || opcode === 2) parts = [opcode, payload];
      else if (opcode === 0 && parts.length) parts.push(payload);
      else continue; // control frames
      if (!fin) continue;
      const [kind, ...data] = parts;
      const body = Buffer.concat(data);
      try {
        onMessage(kind === 1 ? JSON.parse(body.toString()) : decode(body));
      } catch {
        onMessage({ undecodable: body.toString("hex") });
      }
    }
  };
}

/** Rewrites the first WebSocket frame after the HTTP response (the hello) with `change`. */
function rewriteHello(change) {
  let seen = Buffer.alloc(0);
  let done = false;
  return (chunk) => {
    if (done) return chunk;
    seen = Buffer.concat([seen, chunk]);
    const at = seen.indexOf("\r\n\r\n") + 4;
    if (at >= 4 && !seen.subarray(0, 13).toString().startsWith("HTTP/1.1 101")) {
      done = true; // not an upgrade: no hello
      return seen;
    }
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
    change(hello);
    const out = text ? Buffer.from(JSON.stringify(hello)) : Buffer.from(encode(hello));
    const header = out.length < 126 ? [seen[at], out.length] : [seen[at], 126, out.length >> 8, out.length & 0xff];
    done = true;
    return Buffer.concat([seen.subarray(0, at), Buffer.from(header), out, seen.subarray(start + length)]);
  };
}
