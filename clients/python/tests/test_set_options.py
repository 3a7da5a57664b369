"""`set` with persist, ttl and ephemeral, against the real server, including
ephemeral keys set again after a reconnect."""

import json
import queue
import time
import urllib.request

import pytest

import ipcbus
from conftest import WAIT, Proxy
from ipcbus._ephemeral import ttl_ms


class Events:
    """A subscription callback that the test can wait on."""

    def __init__(self):
        self.all = []
        self._queue = queue.Queue()

    def __call__(self, event):
        self.all.append((event.kind, event.key, event.value))
        self._queue.put(event)

    def next(self, kind, key=None):
        """Waits for the next event of `kind` (for `key`), skipping others."""
        deadline = time.monotonic() + WAIT
        while True:
            try:
                event = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("no %s event for %s; saw %s" % (kind, key, self.all))
            if event.kind == kind and (key is None or event.key == key):
                return event


def test_persist_survives_a_restart(server):
    with ipcbus.Bus(server.url) as bus:
        rev = bus.set("p.kept", {"n": 1}, persist=True)
        bus.set("p.lost", 1)
    server.stop()
    server.start()
    with ipcbus.Bus(server.url) as bus:
        assert bus.get_with_rev("p.kept") == ({"n": 1}, rev)
        assert bus.get("p.lost", default=None) is None


def test_ttl_deletes_the_key(bus):
    events = Events()
    bus.subscribe("ttl.key", events)
    rev = bus.set("ttl.key", "short-lived", ttl=0.05)
    assert events.next("val").rev == rev
    assert events.next("del").rev > rev
    assert bus.get("ttl.key", default=None) is None


def test_option_errors(server):
    with ipcbus.Bus(server.url) as bus:
        with pytest.raises(ValueError, match="exclude"):
            bus.set("k", 1, persist=True, ephemeral=True)
        with pytest.raises(ValueError, match="ttl"):
            bus.set("k", 1, ttl=-1)
        # What the server says when a client sends both anyway.
        with pytest.raises(ipcbus.ServerError, match="exclude") as e:
            bus._call({"op": "set", "key": "k", "value": 1, "persist": True, "ephemeral": True})
        assert e.value.code == "bad_request"
    assert [ttl_ms(t) for t in (0, 0.0004, 2.5, float("inf"))] == [1, 1, 2500, 2 ** 53 - 1]


def test_ephemeral_key_goes_when_its_bus_closes(bus, server):
    events = Events()
    with ipcbus.Bus(server.url) as owner:
        bus.subscribe("eph.>", events)
        owner.set("eph.online", True, ephemeral=True)
        assert events.next("val", "eph.online").value is True
    assert events.next("del", "eph.online")
    assert bus.get("eph.online", default=None) is None


def test_ephemeral_keys_are_set_again_after_a_server_restart(server):
    own = Events()
    with ipcbus.Bus(server.url, timeout=WAIT) as owner:
        owner.subscribe("e.>", own)
        online = owner.set("e.online", {"since": 1}, ephemeral=True)
        owner.set("e.ttl", 1, ephemeral=True, ttl=60)
        owner.set("e.deleted", 1, ephemeral=True)
        owner.delete("e.deleted")  # forgotten: not set again
        owner.set("e.plain", "ephemeral", ephemeral=True)
        owner.set("e.plain", "persisted", persist=True)  # no longer ephemeral
        assert own.next("val", "e.plain").value == "ephemeral"
        assert own.next("val", "e.plain").value == "persisted"
        server.stop()
        server.start()
        # The replay of the resumed subscription already holds the key: it was
        # set again before the subscription resumed, so no `del` came between.
        assert own.next("val", "e.online").rev > online
        assert ("del", "e.online", None) not in own.all
        with ipcbus.Bus(server.url) as other:
            assert other.get("e.online") == {"since": 1}
            assert other.get("e.ttl") == 1
            assert other.get("e.deleted", default=None) is None
            assert other.get("e.plain") == "persisted"
            events = Events()
            other.subscribe("e.online", events)
            events.next("synced")
            owner.close()  # the new session owns the key: its end deletes it
            events.next("del", "e.online")


def sessions(server):
    with urllib.request.urlopen("http://127.0.0.1:%d/health" % server.port, timeout=WAIT) as r:
        return json.load(r)["sessions"]


def test_ephemeral_key_is_taken_over_when_the_old_connection_lingers(server):
    # The client's connection breaks but the server has not noticed yet, so
    # the key still belongs to the old session: the Bus takes it over.
    proxy = Proxy(server.port)
    events = Events()
    with ipcbus.Bus(server.url) as watcher:
        watcher.subscribe("h.k", events)
        events.next("synced")
        with ipcbus.Bus(proxy.url, timeout=WAIT) as owner:
            rev = owner.set("h.k", "here", ephemeral=True)
            assert events.next("val").rev == rev
            proxy.cut(hold_server_side=True)
            assert events.next("val").rev > rev  # the takeover write
            proxy.release()  # the old session ends now: it no longer owns the key
            deadline = time.monotonic() + WAIT
            while sessions(server) > 2:  # the watcher and the owner's new session
                assert time.monotonic() < deadline, "the old session did not end"
                time.sleep(0.02)
            assert watcher.get("h.k") == "here"
        events.next("del", "h.k")
    assert [kind for kind, _, _ in events.all] == ["synced", "val", "val", "del"], events.all
