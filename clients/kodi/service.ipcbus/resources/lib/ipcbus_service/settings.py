"""The addon's settings as one immutable value, so that the service can tell
what changed (connection or child bus) by comparing two of them."""

from typing import NamedTuple, Optional

import xbmc
import xbmcaddon
import xbmcvfs

from . import ADDON_ID

#: The addon's profile folder: the child bus's data dir, logs and reports.
PROFILE = "special://profile/addon_data/%s/" % ADDON_ID


def log(message: str, level: int = xbmc.LOGINFO) -> None:
    """Writes to kodi.log, prefixed with the addon's id so it can be grepped."""
    xbmc.log("[%s] %s" % (ADDON_ID, message), level)


def profile_dir() -> str:
    """The profile folder as a file system path, created if missing."""
    path = xbmcvfs.translatePath(PROFILE)
    if not xbmcvfs.exists(path):
        xbmcvfs.mkdirs(path)
    return path


class Settings(NamedTuple):
    """Everything the service reads from its settings."""

    host: str
    port: int
    #: The bus's token file; empty: the client's default lookup.
    token_file: str
    start_bus: bool
    #: The ``ipcbus`` binary the service starts when ``start_bus`` is on;
    #: empty: the one bundled for this machine (see ``platforms``).
    binary: str
    publish_player: bool

    @property
    def url(self) -> str:
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "ws://%s:%d/ws" % (host, self.port)

    def child_settings(self) -> tuple:
        """What the child bus depends on: a change to these restarts it."""
        return (self.start_bus, self.binary, self.host, self.port)

    def token(self) -> Optional[str]:
        """The token from the configured file; None means the client looks
        it up (which, inside Kodi, includes this addon's profile folder).
        A configured file that cannot be read raises ``OSError``, so that
        the message names it instead of a bare 401 later."""
        if not self.token_file:
            return None
        path = xbmcvfs.translatePath(self.token_file)
        with open(path, "r", encoding="utf-8") as f:
            token = f.read().split("\n", 1)[0].strip()
        if not token:
            raise OSError("the token file %s is empty" % path)
        return token


def load() -> Settings:
    """Reads the settings now. A new ``Addon()`` each time: an old instance
    may hold the values from before a change."""
    addon = xbmcaddon.Addon(ADDON_ID)
    return Settings(
        host=addon.getSettingString("host").strip() or "127.0.0.1",
        port=addon.getSettingInt("port") or 9099,
        token_file=addon.getSettingString("token_file").strip(),
        start_bus=addon.getSettingBool("start_bus"),
        binary=addon.getSettingString("binary").strip(),
        publish_player=addon.getSettingBool("publish_player"),
    )
