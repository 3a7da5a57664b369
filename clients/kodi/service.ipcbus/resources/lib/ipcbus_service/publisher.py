"""Publishes what Kodi plays: ``kodi.player.state`` and ``kodi.player.item``,
in the shapes docs/kodi.md fixes (the ``--kodi`` bridge writes the same).

Both keys are set ephemeral: the bus deletes them when Kodi's connection
ends, so a crashed Kodi never leaves "playing" behind.
"""

import json
import re
from typing import Any, Callable, Dict, Optional

import xbmc
from ipcbus import NotFound

from .settings import log

STATE_KEY = "kodi.player.state"
ITEM_KEY = "kodi.player.item"


def stopped_state() -> Dict[str, Any]:
    return {"state": "stopped", "file": None, "speed": 0}


def _jsonrpc(method: str, params: Optional[dict] = None) -> Any:
    """Kodi's own JSON-RPC, in process (no network): the only API that
    gives the stream's real picture size (the decoder's size is padded,
    e.g. 368 lines for a 640x360 encode)."""
    request: Dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        request["params"] = params
    try:
        return json.loads(xbmc.executeJSONRPC(json.dumps(request))).get("result")
    except ValueError:
        return None


def _int(text: Any) -> Optional[int]:
    """An InfoLabel such as "1,920" or "640" as an int; None if empty."""
    digits = re.sub(r"[^0-9]", "", str(text or ""))
    return int(digits) if digits else None


def _float(text: Any) -> Optional[float]:
    try:
        return float(str(text).strip())
    except ValueError:
        return None


def _positive(value: Any) -> Optional[int]:
    """Kodi says -1 or 0 for "none" (season, episode, year)."""
    return value if isinstance(value, int) and value > 0 else None


class Publisher(xbmc.Player):
    """Kodi calls these methods on its own thread as playback changes.

    ``bus`` returns the current connection (None while there is none), so
    that the service can reconnect without recreating the player; a write
    that fails is logged and the next event publishes afresh.
    """

    def __init__(self, bus: Callable[[], Any]) -> None:
        super().__init__()
        self._bus = bus
        self.enabled = True
        #: The item last published, so that onAVChange (which also comes
        #: right after onAVStarted) writes only a real change.
        self._item: Optional[Dict[str, Any]] = None
        #: Whether the last item() had the picture size from the stream.
        self._sized = False

    # -- Kodi's callbacks ----------------------------------------------------

    def onAVStarted(self) -> None:
        self.publish_now()

    def onAVChange(self) -> None:
        # Also comes around onAVStarted, sometimes before it and before the
        # stream reports its size: only a change of a published item, with
        # the size known, is written.
        if self._item is None or not self.isPlaying():
            return
        item = self.item()
        if self._sized and item != self._item:
            self._write(ITEM_KEY, item)

    def onPlayBackPaused(self) -> None:
        self._write(STATE_KEY, self.state("paused", 0))

    def onPlayBackResumed(self) -> None:
        self._write(STATE_KEY, self.state("playing", 1))

    def onPlayBackSpeedChanged(self, speed: int) -> None:
        if speed != 0:
            self._write(STATE_KEY, self.state("playing", speed))

    def onPlayBackStopped(self) -> None:
        self.publish_stopped()

    def onPlayBackEnded(self) -> None:
        self.publish_stopped()

    def onPlayBackError(self) -> None:
        self.publish_stopped()

    # -- publishing ------------------------------------------------------------

    def publish_now(self) -> None:
        """Publishes the current state and item: at playback start and after
        every (re)connect, when the bus may have lost them."""
        if not self.isPlaying():
            self.publish_stopped()
            return
        paused = xbmc.getCondVisibility("Player.Paused")
        self._write(STATE_KEY, self.state("paused" if paused else "playing", 0 if paused else 1))
        self._item = None  # after a reconnect, always write it
        self._write(ITEM_KEY, self.item())

    def publish_stopped(self) -> None:
        self._write(STATE_KEY, stopped_state())
        self._write(ITEM_KEY, None)
        self._item = None

    def state(self, state: str, speed: int) -> Dict[str, Any]:
        return {"state": state, "file": self._file(), "speed": speed}

    def _file(self) -> Optional[str]:
        try:
            return self.getPlayingFile() or None
        except RuntimeError:  # playback ended meanwhile
            return None

    def item(self) -> Dict[str, Any]:
        """``kodi.player.item`` for what is playing now."""
        video = self.isPlayingVideo()
        tag = self.getVideoInfoTag() if video else self.getMusicInfoTag()
        try:
            label = self.getPlayingItem().getLabel()
        except (AttributeError, RuntimeError):
            label = ""
        label = label or xbmc.getInfoLabel("Player.Title")
        total = 0.0
        try:
            total = self.getTotalTime()
        except RuntimeError:
            pass
        duration = int(round(total)) if total > 0 else _positive(tag.getDuration())
        file = self._file()
        item: Dict[str, Any] = {
            "title": tag.getTitle() or label,
            "label": label,
            "mediatype": tag.getMediaType() or ("video" if video else "audio"),
            "showtitle": None,
            "season": None,
            "episode": None,
            "year": None,
            "duration": duration,
            "file": file,
            "video": self._video(file) if video else None,
        }
        if video:
            item["showtitle"] = tag.getTVShowTitle() or None
            item["season"] = _positive(tag.getSeason())
            item["episode"] = _positive(tag.getEpisode())
            item["year"] = _positive(tag.getYear())
        else:
            item["year"] = _positive(tag.getYear())
        return item

    def _video(self, file: Optional[str]) -> Dict[str, Any]:
        """The picture: the size as encoded from the demuxer's stream
        (``Player.GetProperties`` ``currentvideostream``); fps and aspect
        from the decoder. When the stream has no size (seen during
        ``onAVChange``), the size published before for the same file, else
        the decoder's (``Player.Process(...)``, which may be padded, e.g.
        368 lines for 360)."""
        stream: Dict[str, Any] = {}
        players = _jsonrpc("Player.GetActivePlayers") or []
        for player in players:
            if player.get("type") == "video":
                result = _jsonrpc("Player.GetProperties", {
                    "playerid": player["playerid"], "properties": ["currentvideostream"]}) or {}
                stream = result.get("currentvideostream") or {}
        aspect = _float(xbmc.getInfoLabel("Player.Process(videodar)"))
        codec = stream.get("codec") or xbmc.getInfoLabel("VideoPlayer.VideoCodec")
        width, height = stream.get("width"), stream.get("height")
        self._sized = bool(width and height)
        before = self._item if self._item and self._item.get("file") == file else None
        if not (width and height) and before and before.get("video"):
            width, height = before["video"]["width"], before["video"]["height"]
        if not (width and height):
            width = _int(xbmc.getInfoLabel("Player.Process(videowidth)"))
            height = _int(xbmc.getInfoLabel("Player.Process(videoheight)"))
        return {
            "width": width,
            "height": height,
            "fps": _float(xbmc.getInfoLabel("Player.Process(videofps)")),
            "aspect": round(aspect, 2) if aspect else None,
            "codec": codec.lower() if codec else None,
        }

    def _write(self, key: str, value: Any) -> None:
        """Sets ``key`` (deletes it when ``value`` is None); logs failures."""
        bus = self._bus()
        if bus is None or not self.enabled:
            return
        try:
            if key == ITEM_KEY:
                self._item = value
            if value is None:
                try:
                    bus.delete(key)
                except NotFound:
                    pass
            else:
                bus.set(key, value, ephemeral=True)
        except Exception as e:  # the bus is down or refused: the next event retries
            log("could not publish %s: %s" % (key, e), xbmc.LOGWARNING)
