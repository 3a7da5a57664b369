"""The Python client against the real server, in both codecs."""

import os
import subprocess
import sys
import threading

import pytest

import ipcbus
from conftest import WAIT, Proxy, Server, free_port


def test_values_round_trip(bus):
    values = [{"temp": 21.5, "tags": ["a", "b"], "n": None}, [1, -2, 3.25], "text", 7, True, None]
    for i, value in enumerate(values):
        rev = bus.set("t.v%d" % i, value)
        assert bus.get("t.v%d" % i) == value
        assert bus.get_with_rev("t.v%d" % i) == (value, rev)
    assert list(bus.keys("t.*")) == ["t.v%d" % i for i in range(len(values))]
    assert bus.delete("t.v0") > rev
    assert bus.get("t.v0", default="gone") == "gone"


def test_errors_are_typed(bus):
    with pytest.raises(ipcbus.NotFound):
        bus.get("absent")
    rev = bus.set("cas", 1, if_rev=0)
    with pytest.raises(ipcbus.RevMismatch) as e:
        bus.set("cas", 2, if_rev=0)
    assert e.value.rev == rev and e.value.code == "rev_mismatch"
    assert bus.set("cas", 2, if_rev=rev) > rev
    with pytest.raises(ipcbus.BadKey):
        bus.set("bad key", 1)
    with pytest.raises(ipcbus.BadPattern):
        bus.keys("a.>.b")
    with pytest.raises(ipcbus.NotFound):
        bus.delete("absent")


def test_an_unencodable_value_is_a_type_error_and_the_connection_stays_up(bus):
    """Nothing is sent: the error names the type, and the next call works
    on the same connection (same session)."""
    import datetime
    session = bus.session
    cases = [(datetime.datetime(2026, 12, 5), TypeError, "datetime"), ({1, 2}, TypeError, "set")]
    if bus.codec == ipcbus.JSON:
        cases += [(b"\x00\x01", TypeError, "bytes"), (float("nan"), ValueError, "")]
    else:
        cases += [(2 ** 70, ValueError, "")]  # past MessagePack's 64-bit integers
    for value, error, names in cases:
        with pytest.raises(error) as e:
            bus.set("enc.bad", value)
        assert names in str(e.value) and "cannot be encoded as %s" % bus.codec in str(e.value), e.value
        with pytest.raises(error):
            bus.set("enc.bad", value, ephemeral=True)
    assert bus.connected and bus.session == session
    assert bus.get("enc.bad", default="never written") == "never written"
    bus.set("enc.good", {"ok": True})
    assert bus.get("enc.good") == {"ok": True}


def test_subscribe_replays_then_follows(bus):
    bus.set("s.one", 1)
    events, done = [], threading.Event()

    def on_event(event):
        events.append(event)
        if event.kind == "del":
            done.set()

    sub = bus.subscribe("s.*", on_event)
    bus.set("s.two", 2)
    bus.delete("s.one")
    assert done.wait(WAIT)
    assert [(e.kind, e.key, e.value) for e in events] == [
        ("val", "s.one", 1),
        ("synced", None, None),
        ("val", "s.two", 2),
        ("del", "s.one", None),
    ]
    sub.close()
    sub.close()  # idempotent


def test_callbacks_may_call_the_bus(bus):
    answered = threading.Event()

    def on_event(event):
        if event.kind == "val":
            bus.set("reply.to", bus.get(event.key) + 1)
            answered.set()

    bus.subscribe("ask", on_event)
    bus.set("ask", 41)
    assert answered.wait(WAIT)
    assert bus.get("reply.to") == 42


def test_watch_is_a_local_mirror(bus, server):
    bus.set("m.a", {"x": 1})
    with ipcbus.Bus(server.url) as other, bus.watch("m.>") as mirror:
        mirror.wait_synced(WAIT)
        assert dict(mirror) == {"m.a": {"x": 1}}
        version = mirror.version
        rev = other.set("m.b", [1, 2])
        mirror.wait_changed(version, WAIT)
        assert mirror["m.b"] == [1, 2] and mirror.rev("m.b") == rev
        version = mirror.version
        other.delete("m.a")
        mirror.wait_changed(version, WAIT)
        assert "m.a" not in mirror and list(mirror) == ["m.b"]


def test_reconnects_and_resumes_subscriptions():
    # Its own server, and no $IPCBUS_DATA_DIR: the token is given explicitly.
    server = Server(free_port()).start()
    try:
        seen, got = [], threading.Event()

        def on_event(event):
            seen.append((event.kind, event.key, event.value))
            if event.value == "after":
                got.set()

        with ipcbus.Bus(server.url, timeout=WAIT, token=server.token) as bus:
            bus.subscribe("r.key", on_event)
            mirror = bus.watch("r.>")
            bus.set("r.key", "before")
            bus.set("r.stale", 1)
            mirror.wait_changed(0, WAIT)
            server.stop()  # all data is gone with it (none was set with persist)
            server.start()
            with ipcbus.Bus(server.url, token=server.token) as writer:
                writer.set("r.key", "after")
            assert got.wait(WAIT), seen
            # The mirror resynced: the key the new server never had is gone.
            while "r.stale" in mirror or "r.key" not in mirror:
                mirror.wait_changed(mirror.version, WAIT)
            assert mirror["r.key"] == "after"
            assert bus.get("r.key") == "after"
    finally:
        server.remove()


def test_json_fallback_without_msgpack(server):
    code = (
        "import sys; sys.modules['msgpack'] = None\n"
        "import ipcbus\n"
        "assert ipcbus.Bus.__init__ and ipcbus.codec.msgpack is None\n"
        "with ipcbus.Bus(%r) as bus:\n"
        "    assert bus.codec == ipcbus.JSON, bus.codec\n"
        "    bus.set('fb.k', {'a': [1, 2]})\n"
        "    assert bus.get('fb.k') == {'a': [1, 2]}\n"
        "print('ok')\n" % server.url
    )
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(ipcbus.__file__)))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_unavailable_when_nothing_listens():
    from conftest import free_port

    with pytest.raises(ipcbus.Unavailable):
        ipcbus.Bus("ws://127.0.0.1:%d/ws" % free_port(), timeout=2)


def test_a_dropped_connection_resumes_with_exactly_what_changed(server):
    proxy = Proxy(server.port)
    events, resumed = [], threading.Event()

    def on_event(event):
        events.append((event.kind, event.key, event.value))
        if len(events) == 6:  # synced and two values, then three changes
            resumed.set()

    with ipcbus.Bus(server.url) as direct, ipcbus.Bus("ws://127.0.0.1:%d/ws" % proxy.port) as bus:
        direct.set("d.a", 1)
        direct.set("d.b", 1)
        synced = threading.Event()
        bus.subscribe("d.*", lambda ev: (on_event(ev), ev.kind == "synced" and synced.set()))
        assert synced.wait(WAIT)
        proxy.cut()
        # While the subscriber is away (its session, and so the tombstone, gone):
        direct.delete("d.a")
        direct.set("d.b", 2)
        direct.set("d.c", 3)
        assert resumed.wait(WAIT), events
        direct.set("d.after", 0)  # nothing but this may follow: no duplicate, no second synced
    assert sorted(events[:3]) == [("synced", None, None), ("val", "d.a", 1), ("val", "d.b", 1)]
    assert sorted(events[3:6]) == [("del", "d.a", None), ("val", "d.b", 2), ("val", "d.c", 3)], events
    assert events[6:] in ([], [("val", "d.after", 0)]), events
