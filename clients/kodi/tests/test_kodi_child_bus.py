"""service.ipcbus with "Start the bus with Kodi": the bus runs as Kodi's
child with its data dir in the addon's profile folder, other addons find
its token with no setting, and it ends when Kodi quits."""

import os
import re
import signal

import pytest

import harness
import ipcbus
from kodi_fixtures import clip  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def kodi():
    port = harness.free_port()
    # IPCBUS_URL for the example addon, which connects to Bus()'s default.
    k = harness.Kodi({"host": "127.0.0.1", "port": port, "token_file": "", "start_bus": True,
                      "binary": harness.binary(), "publish_player": True},
                     env={"IPCBUS_URL": "ws://127.0.0.1:%d/ws" % port})
    k.bus_port = port
    try:
        k.start()
        yield k
    finally:
        k.remove()


def child_pid(kodi) -> int:
    line = kodi.wait_log("[service.ipcbus] started the bus (PID")
    return int(re.search(r"PID (\d+)", line).group(1))


def test_bus_runs_with_its_data_in_the_profile_folder(kodi):
    url = "ws://127.0.0.1:%d/ws" % kodi.bus_port
    kodi.wait_log("[service.ipcbus] connected to %s" % url)
    pid = child_pid(kodi)
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        args = f.read().split(b"\0")
    assert args[0].decode() == harness.binary() and b"serve" in args
    assert args[args.index(b"--data-dir") + 1].decode().rstrip("/") == str(kodi.profile)
    token_file = kodi.profile / "token"
    assert oct(os.stat(str(token_file)).st_mode & 0o777) == "0o600"
    assert "WebSocket at" in (kodi.profile / "bus.log").read_text()
    # "connected to" is logged before the self-test and the first state
    # are written: wait for them rather than race them.
    kodi.wait_log("[service.ipcbus] self-test passed")
    with ipcbus.Bus(url, token=token_file.read_text().strip()) as bus:
        assert bus.get("kodi.selftest.result")["ok"] is True
        state = harness.wait_until(lambda: bus.get("kodi.player.state", None), harness.WAIT, "kodi.player.state")
        assert state == {"state": "stopped", "file": None, "speed": 0}
    with pytest.raises(ipcbus.Unauthorized):
        ipcbus.Bus(url, token="not-the-token", reconnect=False)


def test_another_addon_finds_the_token_with_no_setting(kodi):
    url = "ws://127.0.0.1:%d/ws" % kodi.bus_port
    kodi.wait_log("[service.ipcbus] connected to %s" % url)
    since = kodi.log_size()
    kodi.run_addon("script.ipcbus.probe", "token", url)
    line = kodi.wait_log("[script.ipcbus.probe] token", since=since)
    assert "token OK (codec ipcbus.v1.json)" in line, line
    with ipcbus.Bus(url, token=(kodi.profile / "token").read_text().strip()) as bus:
        assert bus.get("kodi.probe.token") == {"ok": True, "codec": "ipcbus.v1.json"}


def test_a_bus_left_by_a_crashed_kodi_is_ended_at_the_next_start(kodi):
    url = "ws://127.0.0.1:%d/ws" % kodi.bus_port
    kodi.wait_log("[service.ipcbus] connected to %s" % url)
    left = child_pid(kodi)
    kodi.crash()
    try:
        assert not harness.process_gone(left)  # orphaned, still holding the port
        kodi.start()
        kodi.wait_log("[service.ipcbus] ending the bus (PID %d) that an earlier run of Kodi left running" % left)
        # The addon logs before it signals, then waits up to 5 s for the exit
        # (runner.STOP_TIMEOUT) before SIGKILL: the bus is gone by then.
        harness.wait_until(lambda: harness.process_gone(left), 10.0, "the stale bus %d to end" % left)
    finally:
        if not harness.process_gone(left):
            os.kill(left, signal.SIGKILL)  # the addon did not: leave nothing behind
    kodi.wait_log("[service.ipcbus] connected to %s" % url)
    assert child_pid(kodi) != left
    assert int((kodi.profile / "bus.pid").read_text()) == child_pid(kodi)


def test_the_example_addon_follows_playback(kodi, clip):
    """examples/kodi/script.ipcbus.nowplaying, with no setting but $IPCBUS_URL."""
    kodi.wait_log("[service.ipcbus] connected to")
    since = kodi.log_size()
    kodi.run_addon("script.ipcbus.nowplaying")
    kodi.wait_log("[script.ipcbus.nowplaying] showing: Nothing is playing", since=since)
    since = kodi.log_size()
    kodi.rpc.call("Player.Open", {"item": {"file": clip}})
    kodi.wait_log("[script.ipcbus.nowplaying] showing: ipcbus-clip.mp4 (640x360, h264)", since=since)
    since = kodi.log_size()
    kodi.rpc.call("Player.Stop", {"playerid": kodi.rpc.call("Player.GetActivePlayers")[0]["playerid"]})
    kodi.wait_log("[script.ipcbus.nowplaying] showing: Nothing is playing", since=since)
    # It stays open: the next test checks that it ends when Kodi quits.


def test_the_bus_ends_with_kodi(kodi):
    """Runs last in this module: it quits Kodi."""
    pid = child_pid(kodi)
    assert not harness.process_gone(pid)
    since = kodi.log_size()
    kodi.stop()  # Application.Quit (then SIGKILL if Kodi hung: the test would fail below)
    log = kodi.log()[since:]
    assert "[service.ipcbus] stopped the bus (PID %d, status" % pid in log, kodi.log_excerpt()
    assert harness.process_gone(pid)
    assert not (kodi.profile / "token").exists()  # no stale token left to shadow another bus's
    # The example addon, still open, ended too, by itself.
    assert "[script.ipcbus.nowplaying] closed" in log
    assert "script.ipcbus.nowplaying/default.py): script didn't stop" not in log
