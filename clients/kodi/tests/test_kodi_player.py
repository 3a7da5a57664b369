"""service.ipcbus in a real Kodi, connected to an ipcbus server the test
runs: the startup self-test, now-playing keys (issue 5), the settings
actions, and a settings change that takes effect while Kodi runs."""

import pytest

import harness
import ipcbus
from kodi_fixtures import clip  # noqa: F401 (fixture)
from player_checks import now_playing_then_stop, pause_and_resume, play, stop


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


def test_startup_selftest_is_logged_and_published(kodi, bus):
    line = kodi.wait_log("[service.ipcbus] self-test passed")
    assert "set (rev" in line and "kodi.selftest.probe." in line
    result = bus.get("kodi.selftest.result")
    assert result["ok"] is True, result
    assert "get and subscribe" in result["detail"]
    # the probe key was cleaned up
    assert not [k for k in bus.keys("kodi.selftest.>") if ".probe." in k]


def test_now_playing_reaches_a_subscriber_then_stop_clears_it(kodi, bus, clip):
    now_playing_then_stop(kodi, bus, clip, "service.ipcbus addon")


def test_pause_and_resume(kodi, bus, clip):
    pause_and_resume(kodi, bus, clip)


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
    assert "4 of 4 checks passed" in line, line
    text = report.read_text()
    assert "FAIL" not in text, text
    for name in ("set, get and subscribe", "delete reaches subscribers", "keys by pattern",
                 "watch (local mirror)"):
        assert "PASS  " + name in text, text
    assert "connected: ws://" in text, text
    assert text.rstrip().endswith("4 of 4 checks passed")
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
