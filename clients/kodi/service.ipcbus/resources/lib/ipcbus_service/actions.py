"""The settings dialog's buttons, run as ``RunScript(service.ipcbus,<action>)``
(or ``Addons.ExecuteAddon`` with ``params: ["<action>"]``). Each logs its
result to kodi.log before it shows a dialog, so it can be read headless."""

from typing import Any, List, Optional

import xbmc
import xbmcgui

from . import selftest, settings
from .connection import connect
from .settings import log

ACTIONS = ("test", "selftest")


def _connect(s: settings.Settings, action: str, failed: str) -> Optional[Any]:
    """A connection that does not retry, or None once the failure has been
    logged as ``<action>: FAILED: ...`` and shown as ``<failed>``."""
    try:
        return connect(s, reconnect=False)
    except Exception as e:
        message = "cannot connect to %s: %s" % (s.url, e)
        log("%s: FAILED: %s" % (action, message), xbmc.LOGERROR)
        xbmcgui.Dialog().ok("ipcbus", "%s:\n%s" % (failed, message))
        return None


def test_connection() -> None:
    s = settings.load()
    bus = _connect(s, "Test connection", "Test connection failed")
    if bus is None:
        return
    try:
        count = len(bus.keys())
        message = "connected to %s (codec %s, %d keys)" % (s.url, bus.codec, count)
    finally:
        bus.close()
    log("Test connection: OK: %s" % message)
    xbmcgui.Dialog().ok("ipcbus", "Test connection succeeded:\n%s" % message)


def full_selftest() -> None:
    s = settings.load()
    bus = _connect(s, "Full self-test", "Self-test failed")
    if bus is None:
        return
    try:
        checks, path = selftest.full(bus, s, sorted(bus.keys("kodi.player.>")))
    finally:
        bus.close()
    summary = selftest.summary(checks)
    log("Full self-test: %s; report in %s" % (summary, path),
        xbmc.LOGINFO if all(c.ok for c in checks) else xbmc.LOGERROR)
    xbmcgui.Dialog().ok("ipcbus", "%s.\nThe report is in %s" % (summary, path))


def main(args: List[str]) -> None:
    action = args[0] if args else ""
    if action == "test":
        test_connection()
    elif action == "selftest":
        full_selftest()
    else:
        log("unknown action %r: RunScript(service.ipcbus,<action>) takes one of %s"
            % (action, ", ".join(ACTIONS)), xbmc.LOGERROR)
