"""The key shapes of docs/kodi.md, as assertions that both publishers'
tests use (the service.ipcbus addon here, ``ipcbus serve --kodi`` later).
Each returns nothing and raises AssertionError naming the field."""

from typing import Any, Optional

STATES = ("playing", "paused", "stopped")
ITEM_FIELDS = ("title", "label", "mediatype", "showtitle", "season", "episode", "year", "duration",
               "file", "video")
VIDEO_FIELDS = ("width", "height", "fps", "aspect", "codec")


def _type(value: Any, field: str, *types: type, nullable: bool = False) -> None:
    if value is None and nullable:
        return
    # bool is an int in Python, but never a valid value here
    ok = isinstance(value, types) and not isinstance(value, bool)
    assert ok, "%s is %r (%s), expected %s%s" % (
        field, value, type(value).__name__, " or ".join(t.__name__ for t in types), " or nil" if nullable else "")


def assert_state_shape(value: Any, state: Optional[str] = None) -> None:
    """``kodi.player.state``: exactly {state, file, speed}."""
    assert isinstance(value, dict), "kodi.player.state is %r, not a map" % (value,)
    assert set(value) == {"state", "file", "speed"}, "kodi.player.state has fields %s" % sorted(value)
    assert value["state"] in STATES, "state is %r" % (value["state"],)
    if state is not None:
        assert value["state"] == state, "state is %r, expected %r" % (value["state"], state)
    _type(value["speed"], "speed", int, float)
    if value["state"] == "stopped":
        assert value["file"] is None, "file is %r while stopped" % (value["file"],)
        assert value["speed"] == 0, "speed is %r while stopped" % (value["speed"],)
    else:
        _type(value["file"], "file", str)
        assert value["file"], "file is empty while %s" % value["state"]
    if value["state"] == "paused":
        assert value["speed"] == 0, "speed is %r while paused" % (value["speed"],)


def assert_item_shape(value: Any) -> None:
    """``kodi.player.item``: every field of the contract, with its type."""
    assert isinstance(value, dict), "kodi.player.item is %r, not a map" % (value,)
    assert set(value) == set(ITEM_FIELDS), "kodi.player.item has fields %s, expected %s" % (
        sorted(value), sorted(ITEM_FIELDS))
    _type(value["title"], "title", str)
    _type(value["label"], "label", str)
    _type(value["mediatype"], "mediatype", str)
    assert value["mediatype"], "mediatype is empty"
    _type(value["showtitle"], "showtitle", str, nullable=True)
    for field in ("season", "episode", "year", "duration"):
        _type(value[field], field, int, nullable=True)
    for field in ("season", "episode", "year"):  # Kodi's -1 / 0 for "none" must not leak
        assert value[field] is None or value[field] > 0, "%s is %r; nil means none" % (field, value[field])
    _type(value["file"], "file", str)
    video = value["video"]
    if video is None:
        return
    assert isinstance(video, dict), "video is %r, not a map or nil" % (video,)
    assert set(video) == set(VIDEO_FIELDS), "video has fields %s" % sorted(video)
    _type(video["width"], "video.width", int, nullable=True)
    _type(video["height"], "video.height", int, nullable=True)
    _type(video["fps"], "video.fps", float, nullable=True)
    _type(video["aspect"], "video.aspect", float, nullable=True)
    if video["aspect"] is not None:
        assert round(video["aspect"], 2) == video["aspect"], "aspect %r is not rounded to 2 decimals" % video["aspect"]
    _type(video["codec"], "video.codec", str, nullable=True)
    if video["codec"] is not None:
        assert video["codec"] == video["codec"].lower(), "codec %r is not lowercase" % video["codec"]
