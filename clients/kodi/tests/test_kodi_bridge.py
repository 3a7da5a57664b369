"""``ipcbus serve --kodi`` against a real Kodi with no ipcbus addon
installed (issue 5 step 5): the same now-playing checks as the addon's
(player_checks.py), and the bridge following a Kodi restart."""

import time

import pytest

import harness
import ipcbus
from jsonrpc import JsonRpcError
from kodi_fixtures import Recorder, clip  # noqa: F401 (fixture)
from player_checks import now_playing_then_stop, pause_and_resume, play

STOPPED = {"state": "stopped", "file": None, "speed": 0}


@pytest.fixture(scope="module")
def kodi():
    k = harness.Kodi({}, addons=False)
    try:
        k.start()
        yield k
    finally:
        k.remove()


@pytest.fixture(scope="module")
def server(kodi):
    """Started after Kodi answers, so the bridge's first attempt connects."""
    s = harness.Server(kodi="ws://127.0.0.1:%d/jsonrpc" % kodi.port)
    try:
        s.wait_kodi("connected")
        yield s
    finally:
        s.stop()


@pytest.fixture
def bus(server):
    with ipcbus.Bus(server.url, token=server.token) as b:
        yield b


def test_no_ipcbus_addon_is_installed(kodi):
    for addon in ("service.ipcbus", "script.module.ipcbus"):
        with pytest.raises(JsonRpcError):
            kodi.rpc.call("Addons.GetAddonDetails", {"addonid": addon})


def test_connected_bridge_publishes_stopped(server, bus):
    assert server.health()["kodi"] == "connected"
    assert bus.get("kodi.player.state") == STOPPED
    assert bus.get("kodi.player.item", None) is None


def test_now_playing_reaches_a_subscriber_then_stop_clears_it(kodi, bus, clip):
    now_playing_then_stop(kodi, bus, clip, "ipcbus serve --kodi")


def test_pause_and_resume(kodi, bus, clip):
    pause_and_resume(kodi, bus, clip)


def test_follows_a_kodi_restart(kodi, server, bus, clip):
    """Runs last in this module: it restarts Kodi (same home and port)."""
    recorder = Recorder()
    sub = bus.subscribe("kodi.player.>", recorder)
    recorder.wait_for(lambda e: e.kind == "synced", what="synced")
    since = recorder.mark()
    play(kodi, clip)
    recorder.wait_for(lambda e: e.key == "kodi.player.state" and e.kind == "val"
                      and e.value["state"] == "playing", since, what="state playing")

    # Quit while playing: Application.Quit, then the PID is waited for.
    old = kodi.proc.pid
    since = recorder.mark()
    kodi.stop()
    assert harness.process_gone(old)
    server.wait_kodi("retrying")
    recorder.wait_for(lambda e: e.key == "kodi.player.state" and e.kind == "val" and e.value == STOPPED,
                      since, what="state stopped once Kodi quit")
    recorder.wait_for(lambda e: e.key == "kodi.player.item" and e.kind == "del", since,
                      what="kodi.player.item deleted once Kodi quit")

    # A new Kodi on the same port; the bridge's backoff (0.25 s doubling to
    # 30 s) may wait up to 16 s past Kodi's ~12 s restart.
    kodi.start()
    assert kodi.proc.pid != old
    answered = time.monotonic()
    server.wait_kodi("connected", timeout=60)
    print("\nthe bridge reconnected %.2f s after the new Kodi answered JSON-RPC" % (time.monotonic() - answered))
    assert bus.get("kodi.player.state") == STOPPED
    assert bus.get("kodi.player.item", None) is None
    sub.close()
    assert "lost Kodi" in server.log_text()

    # It follows the new Kodi: the same checks as before the restart.
    now_playing_then_stop(kodi, bus, clip, "ipcbus serve --kodi, after a Kodi restart")
