"""``subscribe(pattern, callback, meta=True)``: each ``"val"`` event carries
what the server says of the write (docs/protocol.md §4), in both codecs and
after a reconnect; a plain subscription's events have ``meta`` None. As
clients/js/test/meta.test.js, against the real server."""

import threading

import ipcbus
from conftest import WAIT, Proxy
from ipcbus import Meta

TTL = 600.0
TTL_MS = int(TTL * 1000)
#: Longer than any write of a test takes: ages are checked against it.
RECENT_MS = int(WAIT * 1000)


class Seen:
    """A subscription callback that keeps every event; ``when(match)``
    waits for the first one ``match`` accepts."""

    def __init__(self):
        self.events = []
        self._cond = threading.Condition()

    def __call__(self, event):
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def when(self, match):
        with self._cond:
            found = self._cond.wait_for(lambda: [e for e in self.events if match(e)], WAIT)
            assert found, "no such event within %s s; saw %s" % (WAIT, self.events)
            return found[0]

    def synced(self):
        return self.when(lambda e: e.kind == "synced")


def val(key, value=None):
    return lambda e: e.kind == "val" and e.key == key and (value is None or e.value == value)


def recent(meta):
    assert meta.age_ms is not None and 0 <= meta.age_ms < RECENT_MS, meta


def test_a_meta_subscription_sees_each_write_s_options_and_a_plain_one_none(bus, server):
    with ipcbus.Bus(server.url, codec=bus.codec) as writer:
        writer.set("m.plain", 1)
        writer.set("m.persisted", 2, persist=True)
        writer.set("m.ephemeral", 3, ephemeral=True)
        writer.set("m.ttl", 4, ttl=TTL)
        with_meta, plain = Seen(), Seen()
        sub = bus.subscribe("m.>", with_meta, meta=True)
        assert sub.meta is True
        assert bus.subscribe("m.>", plain).meta is False
        with_meta.synced()
        plain.synced()

        meta = {e.key: e.meta for e in with_meta.events if e.kind == "val"}
        assert sorted(meta) == ["m.ephemeral", "m.persisted", "m.plain", "m.ttl"], with_meta.events
        for m in meta.values():
            assert isinstance(m, Meta), m
            recent(m)
        assert meta["m.plain"]._replace(age_ms=None) == Meta()
        assert meta["m.persisted"]._replace(age_ms=None) == Meta(persist=True)
        assert meta["m.ephemeral"]._replace(age_ms=None) == Meta(ephemeral=True)
        assert not meta["m.ttl"].persist and not meta["m.ttl"].ephemeral
        assert 0 < meta["m.ttl"].ttl_ms <= TTL_MS, meta["m.ttl"]
        assert [e.meta for e in plain.events] == [None] * 5, plain.events

        # Live: a new set's options replace the old ones; a del has none.
        writer.set("m.persisted", 5, ttl=5)
        now = with_meta.when(val("m.persisted", 5)).meta
        assert not now.persist and 0 < now.ttl_ms <= 5000, now
        recent(now)
        assert plain.when(val("m.persisted", 5)).meta is None
        writer.delete("m.plain")
        assert with_meta.when(lambda e: e.kind == "del").meta is None


def test_meta_is_asked_for_again_after_a_cut_connection(server):
    proxy = Proxy(server.port)
    states = []
    reconnected = threading.Event()

    def on_state(state, reason):
        states.append(state)
        if state == "open" and "reconnecting" in states:
            reconnected.set()

    with ipcbus.Bus(server.url) as direct, ipcbus.Bus(proxy.url, timeout=WAIT, on_state=on_state) as bus:
        with_meta, plain = Seen(), Seen()
        sub = bus.subscribe("c.>", with_meta, meta=True)
        bus.subscribe("c.>", plain)
        with_meta.synced()
        plain.synced()
        proxy.cut()
        assert reconnected.wait(WAIT), states
        direct.set("c.after", 1, ephemeral=True)
        m = with_meta.when(val("c.after")).meta
        assert m is not None and m.ephemeral and not m.persist and m.ttl_ms is None, m
        recent(m)
        assert plain.when(val("c.after")).meta is None
        assert sub.meta is True


def test_meta_after_a_restart_and_the_data_file_keeps_no_age(server):
    with ipcbus.Bus(server.url, timeout=WAIT) as bus:
        bus.set("r.kept", 1, persist=True)
        seen = Seen()
        bus.subscribe("r.>", seen, meta=True)
        assert seen.when(val("r.kept")).meta.persist
        server.stop()
        server.start()
        bus.set("r.after", 2, ttl=TTL)  # waits until the Bus is connected again
        m = seen.when(val("r.after")).meta
        assert m is not None and 0 < m.ttl_ms <= TTL_MS and not m.persist, m
        recent(m)
        # A new subscription sees the restored value: persisted, of unknown age.
        fresh = Seen()
        bus.subscribe("r.kept", fresh, meta=True)
        assert fresh.when(val("r.kept")).meta == Meta(persist=True)


def test_an_event_without_meta_compares_as_before(bus):
    seen = Seen()
    bus.subscribe("u.k", seen)
    rev = bus.set("u.k", "v")
    event = seen.when(val("u.k"))
    assert event == ipcbus.Event("val", "u.k", "v", rev)
    assert event.meta is None
