"""The now-playing checks of issue 5, shared by both publishers' tests
(test_kodi_player.py: the service.ipcbus addon; test_kodi_bridge.py:
``ipcbus serve --kodi``), so that both are held to the same keys, shapes
and deadline. ``kodi`` is a started :class:`harness.Kodi`, ``bus`` an
``ipcbus.Bus`` on the server the publisher writes to."""

import os

import harness
from kodi_fixtures import Recorder
from shapes import assert_item_shape, assert_state_shape

#: The contract: kodi.player.item arrives within this long of Player.OnAVStart.
ITEM_DEADLINE = 2.0


def play(kodi, clip):
    """``Player.Open``; returns the ``Player.OnAVStart`` notification."""
    since = kodi.rpc.mark()
    kodi.rpc.call("Player.Open", {"item": {"file": clip}})
    return kodi.rpc.wait_for("Player.OnAVStart", since, timeout=harness.WAIT)


def stop(kodi):
    since = kodi.rpc.mark()
    for player in kodi.rpc.call("Player.GetActivePlayers"):
        kodi.rpc.call("Player.Stop", {"playerid": player["playerid"]})
    kodi.rpc.wait_for("Player.OnStop", since, timeout=harness.WAIT)


def now_playing_then_stop(kodi, bus, clip, publisher: str) -> float:
    """A subscriber on ``kodi.player.>`` (subscribed before playback) gets
    the clip's item within :data:`ITEM_DEADLINE` of ``Player.OnAVStart``,
    then the state; ``Player.Stop`` makes the state stopped and deletes the
    item. Returns (and prints) the delay OnAVStart -> item."""
    recorder = Recorder()
    sub = bus.subscribe("kodi.player.>", recorder)  # before playback
    recorder.wait_for(lambda e: e.kind == "synced", what="synced")
    since = recorder.mark()

    started = play(kodi, clip)
    at, event = recorder.wait_for(
        lambda e: e.kind == "val" and e.key == "kodi.player.item" and e.value.get("file") == clip,
        since, what="kodi.player.item for the clip")
    delay = at - started.at
    print("\n%s: kodi.player.item %.3f s after Player.OnAVStart" % (publisher, delay))
    assert delay <= ITEM_DEADLINE, "kodi.player.item came %.2f s after OnAVStart" % delay
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
    # Every item written during the playback (on a stream change it is
    # written again) had the encoded size, never the decoder's padded 368 lines.
    sizes = {(e.value["video"]["width"], e.value["video"]["height"])
             for _, e in recorder.events if e.kind == "val" and e.key == "kodi.player.item"}
    assert sizes == {(640, 360)}
    return delay


def pause_and_resume(kodi, bus, clip) -> None:
    """``Player.PlayPause`` off and on: state paused (speed 0), then playing."""
    recorder = Recorder()
    sub = bus.subscribe("kodi.player.state", recorder)
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
    assert_state_shape(resumed.value, "playing")
    assert resumed.value == {"state": "playing", "file": clip, "speed": 1}
    stop(kodi)
    sub.close()
