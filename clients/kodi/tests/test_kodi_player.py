"""service.ipcbus in a real Kodi, connected to an ipcbus server the test
runs: the startup self-test, now-playing keys (issue 5), the settings
actions, and a settings change that takes effect while Kodi runs."""

import os
import pathlib

import pytest

import harness
import ipcbus
from kodi_fixtures import clip, recorder  # noqa: F401 (fixtures)
from shapes import assert_item_shape, assert_state_shape

#: The contract: kodi.player.item arrives within this long of Player.OnAVStart.
ITEM_DEADLINE = 2.0


@pytest.fixture(scope="module")
def server():
    s = harness.Server()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def kodi(server):
    k = harness.Kodi({"host": "127.0.0.1", "port": server.port, "token_file": server.token_file,
                      "start_bus": False, "publish_player": True})
    try:
        k.start()
        k.wait_log("[service.ipcbus] connected to %s" % server.url)
        yield k
    finally:
        k.remove()


@pytest.fixture
def bus(server):
    with ipcbus.Bus(server.url, token=server.token) as b:
        yield b


def play(kodi, clip):
    since = kodi.rpc.mark()
    kodi.rpc.call("Player.Open", {"item": {"file": clip}})
    return kodi.rpc.wait_for("Player.OnAVStart", since, timeout=harness.WAIT)


def stop(kodi):
    since = kodi.rpc.mark()
    for player in kodi.rpc.call("Player.GetActivePlayers"):
        kodi.rpc.call("Player.Stop", {"playerid": player["playerid"]})
    kodi.rpc.wait_for("Player.OnStop", since, timeout=harness.WAIT)


def test_startup_selftest_is_logged_and_published(kodi, bus):
    line = kodi.wait_log("[service.ipcbus] self-test passed")
    assert "set (rev" in line and "kodi.selftest.probe." in line
    result = bus.get("kodi.selftest.result")
    assert result["ok"] is True, result
    assert "get and subscribe" in result["detail"]
    # the probe key was cleaned up
    assert not [k for k in bus.keys("kodi.selftest.>") if ".probe." in k]


def test_now_playing_reaches_a_subscriber_then_stop_clears_it(kodi, bus, recorder, clip):
    sub = bus.subscribe("kodi.player.>", recorder)  # before playback
    recorder.wait_for(lambda e: e.kind == "synced", what="synced")
    since = recorder.mark()

    started = play(kodi, clip)
    at, event = recorder.wait_for(
        lambda e: e.kind == "val" and e.key == "kodi.player.item" and e.value.get("file") == clip,
        since, what="kodi.player.item for the clip")
    assert at - started.at <= ITEM_DEADLINE, "kodi.player.item came %.2f s after OnAVStart" % (at - started.at)
    item = event.value
    assert_item_shape(item)
    assert os.path.basename(item["file"]) == "ipcbus-clip.mp4"
    assert item["label"] == "ipcbus-clip.mp4"
    assert item["title"] == "ipcbus-clip.mp4"  # no library title: the label
    assert item["mediatype"] == "video"
    assert (item["video"]["width"], item["video"]["height"]) == (640, 360)
    assert item["video"]["fps"] == 25.0
    assert item["video"]["aspect"] == 1.78
    assert item["video"]["codec"] == "h264"
    assert item["duration"] == 5
    assert item["showtitle"] is None and item["season"] is None and item["year"] is None
    _, state = recorder.wait_for(lambda e: e.key == "kodi.player.state" and e.value["state"] == "playing",
                                 since, what="state playing")
    assert_state_shape(state.value, "playing")
    assert state.value == {"state": "playing", "file": clip, "speed": 1}

    since = recorder.mark()
    stop(kodi)
    _, state = recorder.wait_for(lambda e: e.key == "kodi.player.state" and e.kind == "val"
                                 and e.value["state"] == "stopped", since, what="state stopped")
    assert_state_shape(state.value, "stopped")
    recorder.wait_for(lambda e: e.kind == "del" and e.key == "kodi.player.item", since,
                      what="kodi.player.item deleted")
    assert bus.get("kodi.player.item", None) is None
    sub.close()
    # Every item written during the playback (onAVChange writes again on a
    # change) had the encoded size, never the decoder's padded 368 lines.
    sizes = {(e.value["video"]["width"], e.value["video"]["height"])
             for _, e in recorder.events if e.kind == "val" and e.key == "kodi.player.item"}
    assert sizes == {(640, 360)}


def test_pause_and_resume(kodi, bus, recorder, clip):
    bus.subscribe("kodi.player.state", recorder)
    recorder.wait_for(lambda e: e.kind == "synced", what="synced")
    since = recorder.mark()
    play(kodi, clip)
    recorder.wait_for(lambda e: e.kind == "val" and e.value["state"] == "playing", since, what="playing")
    player = kodi.rpc.call("Player.GetActivePlayers")[0]["playerid"]

    since = recorder.mark()
    kodi.rpc.call("Player.PlayPause", {"playerid": player, "play": False})
    _, paused = recorder.wait_for(lambda e: e.kind == "val" and e.value["state"] == "paused", since,
                                  what="paused")
    assert_state_shape(paused.value, "paused")
    assert paused.value == {"state": "paused", "file": clip, "speed": 0}

    since = recorder.mark()
    kodi.rpc.call("Player.PlayPause", {"playerid": player, "play": True})
    _, resumed = recorder.wait_for(lambda e: e.kind == "val" and e.value["state"] == "playing", since,
                                   what="playing again")
    assert resumed.value == {"state": "playing", "file": clip, "speed": 1}
    stop(kodi)


def test_test_connection_action_logs_its_result(kodi):
    since = kodi.log_size()
    kodi.run_addon("service.ipcbus", "test")
    line = kodi.wait_log("[service.ipcbus] Test connection:", since=since)
    assert "Test connection: OK: connected to ws://127.0.0.1:" in line and "codec ipcbus.v1.json" in line
    kodi.close_dialog()


def test_full_selftest_action_writes_its_report(kodi):
    report = kodi.profile / "selftest.txt"
    if report.exists():
        report.unlink()
    since = kodi.log_size()
    kodi.run_addon("service.ipcbus", "selftest")
    line = kodi.wait_log("[service.ipcbus] Full self-test:", since=since)
    assert "6 of 6 checks passed" in line, line
    text = report.read_text()
    assert "FAIL" not in text, text
    for name in ("connect", "set, get and subscribe", "delete reaches subscribers", "keys by pattern",
                 "watch (local mirror)"):
        assert "PASS  " + name in text, text
    assert text.rstrip().endswith("6 of 6 checks passed")
    kodi.close_dialog()


def test_unknown_action_is_logged(kodi):
    since = kodi.log_size()
    kodi.run_addon("service.ipcbus", "frobnicate")
    line = kodi.wait_log("[service.ipcbus] unknown action", since=since)
    assert "'frobnicate'" in line and "test, selftest" in line


def test_port_change_takes_effect_without_reenabling(kodi, server, clip):
    """Runs last in this module: it moves the addon to another server."""
    other = harness.Server()
    try:
        since = kodi.log_size()
        # As the settings dialog does: Addon.setSetting, from another script.
        kodi.run_addon("script.ipcbus.probe", "set", "port=%d" % other.port, "token_file=" + other.token_file)
        kodi.wait_log("[script.ipcbus.probe] set done", since=since)
        kodi.wait_log("[service.ipcbus] connected to %s" % other.url, since=since)
        kodi.wait_log("[service.ipcbus] self-test passed", since=since)
        with ipcbus.Bus(other.url, token=other.token) as bus:
            assert bus.get("kodi.selftest.result")["ok"] is True
            # Now playing goes to the new server.
            play(kodi, clip)
            harness.wait_until(lambda: bus.get("kodi.player.item", None), harness.WAIT,
                               "kodi.player.item on the new server")
            stop(kodi)
            harness.wait_until(lambda: bus.get("kodi.player.state")["state"] == "stopped", harness.WAIT,
                               "state stopped on the new server")
        # The old connection is closed: its ephemeral keys are gone from the old server.
        with ipcbus.Bus(server.url, token=server.token) as old:
            harness.wait_until(lambda: not old.keys("kodi.>"), harness.WAIT, "the old server to lose the keys")
    finally:
        other.stop()
