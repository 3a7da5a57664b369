"""The reconnect contract (docs/clients.md) against the real server: the
server stopped and started again, or the connection cut by a proxy."""

import queue
import threading

import pytest

import ipcbus
from conftest import WAIT, Proxy, Server, free_port


@pytest.fixture
def own_server():
    """A server of the test's own, which it may stop and start again (same
    port, data dir and token)."""
    server = Server(free_port()).start()
    yield server
    server.remove()


class States:
    """What ``on_state`` reported, in order."""

    def __init__(self):
        self.seen = []
        self._changes = queue.Queue()

    def __call__(self, state, reason):
        self.seen.append((state, reason))
        self._changes.put(state)

    def wait_for(self, state):
        while True:
            try:
                if self._changes.get(timeout=WAIT) == state:
                    return
            except queue.Empty:
                pytest.fail("no %r state within %s s; saw %r" % (state, WAIT, self.seen))


def in_thread(call):
    """Starts ``call()`` on a thread of its own, once it is running; the
    queue gets its result, or the exception it raised."""
    result = queue.Queue()
    started = threading.Event()

    def run():
        started.set()
        try:
            result.put(call())
        except Exception as e:  # the test's assertion shows it
            result.put(e)

    threading.Thread(target=run, daemon=True).start()
    assert started.wait(WAIT)
    return result


def test_states_are_reported_as_they_happen(own_server):
    states = States()
    bus = ipcbus.Bus(own_server.url, token=own_server.token, on_state=states)
    assert bus.state == "open"
    own_server.stop()
    states.wait_for("reconnecting")
    assert bus.state == "reconnecting" and "connection lost" in bus.state_reason
    own_server.start()
    states.wait_for("open")
    bus.close()
    assert [s for s, _ in states.seen] == ["connecting", "open", "reconnecting", "open", "closed"], states.seen
    assert states.seen[-1] == ("closed", "closed by the client")


def test_a_call_during_an_outage_waits_for_the_bus(own_server):
    states = States()
    with ipcbus.Bus(own_server.url, token=own_server.token, timeout=WAIT, on_state=states) as bus:
        bus.set("o.before", 1, persist=True)
        own_server.stop()
        states.wait_for("reconnecting")
        results = in_thread(lambda: bus.set("o.during", 2))
        own_server.start()
        rev = results.get(timeout=2 * WAIT)
        assert isinstance(rev, int), rev
        assert bus.get_with_rev("o.during") == (2, rev)
        assert bus.get("o.before") == 1


def test_a_call_during_an_outage_fails_cleanly_after_its_timeout(own_server):
    states = States()
    with ipcbus.Bus(own_server.url, token=own_server.token, timeout=0.5, on_state=states) as bus:
        own_server.stop()
        states.wait_for("reconnecting")
        with pytest.raises(ipcbus.Unavailable, match="not connected to .* within 0.5 s") as e:
            bus.get("o.k")
        assert not e.value.maybe_applied
        own_server.start()  # and the Bus is fine once the bus is back
        states.wait_for("open")
        assert bus.set("o.k", 1) >= 1


def test_a_write_whose_reply_was_lost_is_uncertain_and_not_resent(server):
    proxy = Proxy(server.port)
    with ipcbus.Bus(server.url) as direct, ipcbus.Bus(proxy.url, timeout=WAIT) as bus:
        seen = direct.watch("w.k")
        seen.wait_synced(WAIT)
        proxy.mute()
        before = seen.version  # before the set: its event may come at once
        result = in_thread(lambda: bus.set("w.k", "once"))
        seen.wait_changed(before, WAIT)  # applied; the reply is lost on the way
        rev = seen.rev("w.k")
        proxy.cut()
        error = result.get(timeout=2 * WAIT)
        assert isinstance(error, ipcbus.Unavailable) and error.maybe_applied, error
        assert "may have been applied" in str(error)
        # Not resent: the key still has the one write, and a read that was
        # in flight during a cut is simply sent again.
        assert bus.get_with_rev("w.k") == ("once", rev)
        proxy.mute()
        before = proxy.forwarded
        reads = in_thread(lambda: bus.get("w.k"))
        proxy.wait_forwarded(before + 1)  # the get went out; its reply will be dropped
        proxy.cut()
        assert reads.get(timeout=2 * WAIT) == "once"


def test_the_first_connect_waits_for_a_bus_that_starts_later(monkeypatch):
    server = Server(free_port())
    monkeypatch.setenv("IPCBUS_DATA_DIR", server.data_dir)  # its token is not written yet
    states = States()
    try:
        with pytest.raises(ipcbus.Unavailable, match="Connection refused"):
            ipcbus.Bus(server.url, fail_fast=True, on_state=states)
        assert [s for s, _ in states.seen] == ["connecting", "closed"]
        with pytest.raises(ipcbus.Unavailable, match="kept trying for 0.3 s"):
            ipcbus.Bus(server.url, connect_timeout=0.3)
        connected = in_thread(lambda: ipcbus.Bus(server.url, connect_timeout=4 * WAIT))
        server.start()
        bus = connected.get(timeout=5 * WAIT)
        assert isinstance(bus, ipcbus.Bus), bus
        with bus:
            assert bus.set("late.k", 1) >= 1
    finally:
        server.remove()


def test_a_refused_first_connect_fails_at_once(server):
    with pytest.raises(ipcbus.Unauthorized):
        ipcbus.Bus(server.url, token="wrong-token-wrong-token", connect_timeout=60)


@pytest.mark.parametrize("codec", [ipcbus.MSGPACK, ipcbus.JSON])
def test_limits_from_hello_refuse_a_large_value_before_sending(codec):
    server = Server(free_port(), "--max-value-bytes", "1000", "--max-frame-bytes", "3000").start()
    try:
        with ipcbus.Bus(server.url, token=server.token, codec=codec) as bus:
            assert (bus.max_value_bytes, bus.max_frame_bytes) == (1000, 3000)
            with pytest.raises(ipcbus.TooLarge, match="max_frame_bytes .3000.; nothing was sent"):
                bus.set("big.k", "x" * 4000)
            # Over the value limit but within the frame: MessagePack knows
            # the value's size; a JSON request cannot, and the server says so.
            with pytest.raises(ipcbus.TooLarge, match="max_value_bytes"):
                bus.set("big.k", "x" * 1500)
            assert bus.set("big.k", "small") >= 1 and bus.connected
    finally:
        server.remove()


def test_a_1009_close_is_too_large_and_the_bus_reconnects(server):
    states = States()
    with ipcbus.Bus(server.url, timeout=WAIT, on_state=states) as bus:
        bus.max_frame_bytes = bus.max_value_bytes = None  # as if the server had not said
        with pytest.raises(ipcbus.TooLarge, match="frame too big"):
            bus.set("big.k", "x" * (2 << 20))
        states.wait_for("open")
        assert bus.set("big.k", "small") >= 1
        assert [s for s, _ in states.seen][-2:] == ["reconnecting", "open"]


def test_an_ephemeral_set_made_while_down_is_written_once(server):
    proxy = Proxy(server.port)
    states = States()
    with ipcbus.Bus(server.url) as direct, ipcbus.Bus(proxy.url, timeout=WAIT, on_state=states) as bus:
        seen = queue.Queue()
        direct.subscribe("e.>", lambda ev: seen.put((ev.kind, ev.key, ev.value)))
        assert seen.get(timeout=WAIT)[0] == "synced"
        proxy.pause()
        states.wait_for("reconnecting")
        result = in_thread(lambda: bus.set("e.k", "once", ephemeral=True))
        proxy.resume()
        assert isinstance(result.get(timeout=2 * WAIT), int)
        direct.set("e.z", "end")  # everything before it has been delivered
        events = []
        while not events or events[-1][1] != "e.z":
            events.append(seen.get(timeout=WAIT))
        assert events == [("val", "e.k", "once"), ("val", "e.z", "end")]


def test_an_ephemeral_set_that_gave_up_waiting_is_not_set_later(server):
    proxy = Proxy(server.port)
    states = States()
    with ipcbus.Bus(server.url) as direct, ipcbus.Bus(proxy.url, timeout=0.3, on_state=states) as bus:
        proxy.pause()
        states.wait_for("reconnecting")
        with pytest.raises(ipcbus.Unavailable) as e:
            bus.set("e.gone", "never", ephemeral=True)
        assert not e.value.maybe_applied
        proxy.resume()
        states.wait_for("open")
        assert direct.get("e.gone", None) is None


def test_a_reply_after_its_call_timed_out_is_dropped_and_a_late_sub_undone():
    """A call that times out on an open connection, its reply still on the
    way, leaves nothing half-matched: the late reply is dropped (the next
    call gets its own), a write that timed out is ``maybe_applied``, and a
    ``sub`` acknowledged too late is undone on the server (with
    ``--max-subs 1`` there is room for a subscription again)."""
    server = Server(free_port(), "--max-subs", "1").start()
    proxy = Proxy(server.port)
    try:
        with ipcbus.Bus(server.url, token=server.token) as direct, \
                ipcbus.Bus(proxy.url, token=server.token, timeout=0.5) as bus:
            direct.set("t.a", 1)
            direct.set("t.b", 2)
            session = bus.session
            proxy.hold()  # the replies reach the proxy, not the Bus
            with pytest.raises(ipcbus.Timeout) as e:
                bus.get("t.a")
            assert not e.value.maybe_applied
            with pytest.raises(ipcbus.Timeout, match="may have been applied") as e:
                bus.set("t.b", 2, if_rev=direct.get_with_rev("t.b")[1])  # the same value again
            assert e.value.maybe_applied
            late = queue.Queue()
            with pytest.raises(ipcbus.Timeout):
                bus.subscribe("t.*", lambda ev: late.put(ev))
            proxy.unhold()  # the late replies come first, then the next call's
            assert bus.get("t.b") == 2
            assert bus.session == session and bus.state == "open"
            seen = queue.Queue()
            bus.subscribe("t.*", lambda ev: seen.put((ev.kind, ev.key, ev.value)))  # room for it
            replay = [seen.get(timeout=WAIT) for _ in range(3)]
            assert sorted(replay, key=repr) == sorted([("val", "t.a", 1), ("val", "t.b", 2), ("synced", None, None)],
                                                      key=repr)
            direct.set("t.c", 3)
            assert seen.get(timeout=WAIT) == ("val", "t.c", 3)
            assert seen.empty() and late.empty(), (list(seen.queue), list(late.queue))
    finally:
        server.remove()
