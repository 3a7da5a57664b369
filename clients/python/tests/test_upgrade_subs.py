"""Subscriptions named at connect (``Bus(subscribe=[...])``,
docs/protocol.md §5.1) against the real server: the upgrade request names
them, the server makes them before any request, and the first subscribe or
watch of each pattern takes that subscription. ``WsProxy`` shows what the
client really sent (its upgrade request line and its messages) and plays a
server from before §5.1 (it drops the ``sub`` parameters) or one that made
another number of them. As clients/js/test/upgrade-subs.test.js."""

import json
import queue
import socket
import threading
import time
from urllib.parse import parse_qsl, urlsplit

import msgpack
import pytest

import ipcbus
from conftest import WAIT, Server, accept_loop, free_port


class WsProxy:
    """A proxy to the server that records each connection's upgrade request
    line and the messages the client sent on it. ``keep_subs``: how many of
    the request's ``sub`` parameters reach the server (None: all; 0: as a
    server from before §5.1 sees it, none)."""

    def __init__(self, target_port, keep_subs=None):
        self.target = target_port
        self.keep_subs = keep_subs
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.url = "ws://127.0.0.1:%d/ws" % self.listener.getsockname()[1]
        #: Per connection that reached the server, in order:
        #: {"line": the request line the client sent, "sent": [its messages]}.
        self.conns = []
        self._lock = threading.Lock()
        serve = lambda client: threading.Thread(target=self._serve, args=(client,), daemon=True).start()  # noqa: E731
        threading.Thread(target=accept_loop, args=(self.listener, serve), daemon=True).start()

    def close(self):
        self.listener.close()

    def _serve(self, client):
        head = b""
        while b"\r\n\r\n" not in head:
            data = client.recv(65536)
            if not data:
                client.close()
                return
            head += data
        head, rest = head.split(b"\r\n\r\n", 1)
        line, headers = head.decode("latin-1").split("\r\n", 1)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target))
        except OSError:  # the server is away: not a connection
            client.close()
            return
        conn = {"line": line, "sent": []}
        with self._lock:
            self.conns.append(conn)
        request = ("%s\r\n%s\r\n\r\n" % (self._rewrite(line), headers)).encode("latin-1")
        upstream.sendall(request)
        threading.Thread(target=self._pipe, args=(upstream, client, None), daemon=True).start()
        self._pipe(client, upstream, conn, rest)

    def _rewrite(self, line):
        if self.keep_subs is None:
            return line
        method, target, version = line.split(" ")
        path, _, query = target.partition("?")
        params, subs = [], 0
        for param in query.split("&") if query else []:
            if param.startswith("sub="):
                subs += 1
                if subs > self.keep_subs:
                    continue
            params.append(param)
        return "%s %s %s" % (method, path + ("?" + "&".join(params) if params else ""), version)

    def _pipe(self, a, b, conn, pending=b""):
        buffer = bytearray(pending)
        try:
            if pending:
                b.sendall(pending)
            while True:
                if conn is not None:
                    self._record(conn, buffer)
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
                buffer += data
        except OSError:
            pass
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass

    @staticmethod
    def _record(conn, buffer):
        """Takes the whole client frames (masked, RFC 6455 §5.2) off ``buffer``."""
        while len(buffer) >= 2:
            opcode, length, at = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if length == 126:
                length, at = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                length, at = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < at + 4 + length:
                return
            mask = buffer[at:at + 4]
            payload = bytes(c ^ mask[i % 4] for i, c in enumerate(buffer[at + 4:at + 4 + length]))
            del buffer[:at + 4 + length]
            if opcode == 1:
                conn["sent"].append(json.loads(payload.decode()))
            elif opcode == 2:
                conn["sent"].append(msgpack.unpackb(payload, raw=False))

    def ops(self, index, op):
        """The messages of connection ``index`` with this ``op``."""
        return [m for m in self.conns[index]["sent"] if m.get("op") == op]


def sub_params(line):
    """The ``sub`` parameters of a request line, decoded as the server does."""
    return [v for k, v in parse_qsl(urlsplit(line.split(" ")[1]).query) if k == "sub"]


def until(condition):
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "not within %s s" % WAIT
        time.sleep(0.01)


class Seen:
    """A callback that keeps what it was given, as (kind, key, value)."""

    def __init__(self):
        self.events = []
        self._cond = threading.Condition()

    def __call__(self, ev):
        with self._cond:
            self.events.append((ev.kind, ev.key, ev.value))
            self._cond.notify_all()

    def until(self, event):
        with self._cond:
            assert self._cond.wait_for(lambda: event in self.events, WAIT), (event, self.events)
            return list(self.events)


@pytest.fixture
def server(monkeypatch):
    """Room for 4 subscriptions per connection: a fifth is 429 ``limit``."""
    s = Server(free_port(), "--max-subs", "4").start()
    monkeypatch.setenv("IPCBUS_DATA_DIR", s.data_dir)
    yield s
    s.remove()


@pytest.fixture
def proxy(server):
    p = WsProxy(server.port)
    yield p
    p.close()


@pytest.mark.parametrize("codec", [ipcbus.MSGPACK, ipcbus.JSON])
def test_named_at_connect_in_the_url_with_no_sub_request(server, proxy, codec):
    with ipcbus.Bus(server.url, codec=codec) as other:
        other.set("nc.a", 1)
        other.set("nc.b", {"two": [2]})
        other.set("nd.x.y", "x")
        url = proxy.url + "?token=" + server.token  # the URL's own query comes first
        with ipcbus.Bus(url, codec=codec, subscribe=["nc.*", "nd.>", "nc.a"]) as bus:
            line = proxy.conns[0]["line"]
            assert line == "GET /ws?token=%s&sub=nc.%%2A&sub=nd.%%3E&sub=nc.a HTTP/1.1" % server.token, line
            assert sub_params(line) == ["nc.*", "nd.>", "nc.a"]
            # Meanwhile (the get's reply comes after the event: §7): the
            # replay, synced and a live change wait for whoever takes them.
            other.set("nc.c", 3)
            assert bus.get("nc.c") == 3
            seen = Seen()
            sub = bus.subscribe("nc.*", seen)
            mirror = bus.watch("nd.>")
            assert dict(mirror) == {"nd.x.y": "x"}  # at once: no wait_synced needed
            mirror.wait_synced(0)
            one = Seen()
            assert bus.subscribe("nc.a", one).pattern == "nc.a"
            other.set("nc.a", 4)
            other.set("nd.x.z", "z")
            events = seen.until(("val", "nc.a", 4))
            assert sorted(events[:2], key=repr) == [("val", "nc.a", 1), ("val", "nc.b", {"two": [2]})]
            assert events[2:] == [("synced", None, None), ("val", "nc.c", 3), ("val", "nc.a", 4)]
            assert one.until(("val", "nc.a", 4)) == [("val", "nc.a", 1), ("synced", None, None), ("val", "nc.a", 4)]
            until(lambda: "nd.x.z" in mirror)
            assert dict(mirror) == {"nd.x.y": "x", "nd.x.z": "z"}
            assert proxy.ops(0, "sub") == [], proxy.conns[0]["sent"]
            # A second subscribe of the same pattern makes its own.
            again = Seen()
            bus.subscribe("nc.*", again)
            again.until(("synced", None, None))
            assert [m["pattern"] for m in proxy.ops(0, "sub")] == ["nc.*"]
            sub.close()
            other.set("nc.a", 5)
            again.until(("val", "nc.a", 5))
            assert ("val", "nc.a", 5) not in seen.events
            assert len(proxy.conns) == 1


def test_a_meta_subscribe_does_not_take_one_named_at_connect(server, proxy):
    with ipcbus.Bus(proxy.url, subscribe=["m.k"]) as bus:
        bus.subscribe("m.k", Seen(), meta=True)
        assert [(m["pattern"], m.get("meta")) for m in proxy.ops(0, "sub")] == [("m.k", True)]
        bus.subscribe("m.k", Seen())
        assert len(proxy.ops(0, "sub")) == 1


@pytest.mark.parametrize("codec", [ipcbus.MSGPACK, ipcbus.JSON])
def test_a_server_from_before_gets_sub_requests(server, codec):
    older = WsProxy(server.port, keep_subs=0)
    states = []
    try:
        with ipcbus.Bus(server.url, codec=codec) as other:
            other.set("o.a", 1)
            other.set("p.b", 2)
            with ipcbus.Bus(older.url, codec=codec, subscribe=["o.*", "p.>"],
                            on_state=lambda s, _: states.append(s)) as bus:
                assert states == ["connecting", "open"]
                assert sub_params(older.conns[0]["line"]) == ["o.*", "p.>"]  # asked; the server never saw them
                assert [m["pattern"] for m in older.ops(0, "sub")] == ["o.*", "p.>"]
                assert older.ops(0, "unsub") == []
                assert bus.get("p.b") == 2  # the replays came before this reply
                seen = Seen()
                bus.subscribe("o.*", seen)
                mirror = bus.watch("p.>")
                assert dict(mirror) == {"p.b": 2}
                other.set("o.a", 3)
                assert seen.until(("val", "o.a", 3)) == [("val", "o.a", 1), ("synced", None, None), ("val", "o.a", 3)]
                assert len(older.ops(0, "sub")) == 2  # taking them sent nothing
    finally:
        older.close()


def test_a_server_that_made_another_number_has_them_ended_first(server):
    """The server makes only the first (it saw one parameter): the client
    ends it, then asks for both. With --max-subs 4 a fourth subscription
    would be refused if the first were left."""
    one = WsProxy(server.port, keep_subs=1)
    try:
        with ipcbus.Bus(server.url) as other:
            other.set("t.a", 1)
            with ipcbus.Bus(one.url, subscribe=["t.*", "t.>"]) as bus:
                assert one.ops(0, "unsub") == [{"op": "unsub", "sub": 1}]
                assert [m["pattern"] for m in one.ops(0, "sub")] == ["t.*", "t.>"]
                first, second = Seen(), Seen()
                bus.subscribe("t.*", first)
                bus.subscribe("t.>", second)
                bus.subscribe("t.a", Seen())
                bus.subscribe("t.b", Seen())  # the fourth: room for it
                other.set("t.a", 2)
                for seen in (first, second):
                    assert seen.until(("val", "t.a", 2)) == [("val", "t.a", 1), ("synced", None, None),
                                                             ("val", "t.a", 2)]
    finally:
        one.close()


@pytest.mark.parametrize("patterns, error, code", [
    (["ok.>", "a..b"], ipcbus.BadPattern, "bad_pattern"),
    (["a", "b", "c", "d", "e"], ipcbus.LimitReached, "limit"),  # over --max-subs 4
])
def test_a_refused_list_fails_at_once_without_retrying(server, proxy, patterns, error, code):
    states = []
    start = time.monotonic()
    with pytest.raises(error, match="refused the subscriptions named at connect") as e:
        ipcbus.Bus(proxy.url, subscribe=patterns, connect_timeout=60, on_state=lambda s, _: states.append(s))
    assert time.monotonic() - start < WAIT / 2
    assert e.value.code == code
    assert len(proxy.conns) == 1 and sub_params(proxy.conns[0]["line"]) == patterns
    assert states == ["connecting", "closed"]
    with ipcbus.Bus(proxy.url, subscribe=patterns[:4 if code == "limit" else 1]) as bus:  # within the limits
        assert bus.state == "open"


@pytest.mark.parametrize("status, error", [(400, ipcbus.BadPattern), (429, ipcbus.LimitReached)])
def test_a_refusal_without_its_body_is_read_by_status(server, proxy, monkeypatch, status, error):
    """websocket-client before 1.x (Kodi's 0.58) keeps no response body."""
    import websocket

    connect = websocket.create_connection

    def without_body(*args, **kwargs):
        try:
            return connect(*args, **kwargs)
        except websocket.WebSocketBadStatusException as e:
            e.resp_body = None
            raise

    monkeypatch.setattr(websocket, "create_connection", without_body)
    patterns = ["x.y.."] if status == 400 else ["a", "b", "c", "d", "e"]
    with pytest.raises(error, match="HTTP status %d" % status):
        ipcbus.Bus(proxy.url, subscribe=patterns, connect_timeout=60)
    assert len(proxy.conns) == 1


def test_subscribe_is_a_list_of_patterns(server):
    for bad in ("a.>", ["a.>", 1], {"a.>": 1}):
        with pytest.raises(TypeError, match="subscribe"):
            ipcbus.Bus(server.url, subscribe=bad)


@pytest.mark.parametrize("query, own, subscribe", [
    ("?sub=a.%3E", "sub=a.%3E", ()),
    ("?x=1&sub=a.%3E&sub=b", "sub=a.%3E&sub=b", ["c.*"]),
    ("?sub", "sub", ()),  # bare: as in the other clients
])
def test_a_url_with_sub_parameters_of_its_own_fails_before_anything_is_sent(server, proxy, query, own, subscribe):
    want = "the URL has its own sub= parameters (%s); name subscriptions with Bus(subscribe=[...]) instead" % own
    states = []
    with pytest.raises(ValueError) as e:
        ipcbus.Bus(proxy.url + query, subscribe=subscribe, connect_timeout=60, on_state=lambda s, _: states.append(s))
    assert str(e.value) == want
    assert proxy.conns == [] and states == []


@pytest.mark.parametrize("subscribe", [[], ["own.*"]])
def test_a_url_with_other_parameters_is_kept(server, proxy, subscribe):
    with ipcbus.Bus(server.url) as other:
        other.set("own.a", 1)
    with ipcbus.Bus(proxy.url + "?x=sub&subs=1", subscribe=subscribe) as bus:
        line = proxy.conns[0]["line"]
        assert line.startswith("GET /ws?x=sub&subs=1"), line
        assert sub_params(line) == subscribe
        mirror = bus.watch("own.*")
        mirror.wait_synced(WAIT)
        assert dict(mirror) == {"own.a": 1}


def test_they_keep_delivering_after_a_restart_and_are_not_named_again(monkeypatch):
    server = Server(free_port()).start()
    monkeypatch.setenv("IPCBUS_DATA_DIR", server.data_dir)
    proxy = WsProxy(server.port)
    try:
        with ipcbus.Bus(proxy.url, timeout=WAIT, subscribe=["r.>", "q.>"]) as bus:
            seen = Seen()
            bus.subscribe("r.>", seen)
            seen.until(("synced", None, None))
            server.stop()
            server.start()
            bus.set("r.a", 1)  # waits for the reconnect
            bus.set("q.b", 2)
            seen.until(("val", "r.a", 1))
            mirror = bus.watch("q.>")  # taken after the restart: what came meanwhile is there at once
            assert dict(mirror) == {"q.b": 2}
            bus.set("q.b", 3)
            until(lambda: mirror.get("q.b") == 3)
            assert seen.events == [("synced", None, None), ("val", "r.a", 1)]
            assert len(proxy.conns) == 2
            assert sub_params(proxy.conns[1]["line"]) == []
            assert [m["pattern"] for m in proxy.ops(1, "sub")] == ["r.>", "q.>"]
    finally:
        proxy.close()
        server.remove()


def test_what_waits_for_a_taker_is_bounded_newest_per_key(server):
    with ipcbus.Bus(server.url, callback_capacity=3, subscribe=["h.>"]) as bus:
        for value in range(50):
            bus.set("h.a", value)
        bus.set("h.b", "b")
        bus.get("h.b")  # its events came before the reply
        got = queue.Queue()
        bus.subscribe("h.>", lambda ev: got.put((ev.kind, ev.key, ev.value)))
        events = []
        while ("val", "h.b", "b") not in events:
            events.append(got.get(timeout=WAIT))
        assert events == [("synced", None, None), ("val", "h.a", 0), ("val", "h.a", 49), ("val", "h.b", "b")]
