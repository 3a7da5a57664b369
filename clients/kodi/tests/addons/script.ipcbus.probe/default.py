"""Test fixture, run with Addons.ExecuteAddon and params:

- ``["token", <url>]``: connects to <url> with no token and no setting (the
  zero-config lookup) and writes ``kodi.probe.token`` = {"ok", "codec"};
  logs ``[script.ipcbus.probe] token OK`` or ``token FAILED: ...``.
- ``["set", <key>=<value>, ...]``: service.ipcbus's settings, written
  with ``xbmcaddon.Addon("service.ipcbus").setSetting``, as the settings
  dialog does; logs ``[script.ipcbus.probe] set done``.
"""

import sys

import xbmc
import xbmcaddon


def log(message, level=xbmc.LOGINFO):
    xbmc.log("[script.ipcbus.probe] %s" % message, level)


def token(url):
    import ipcbus

    try:
        with ipcbus.Bus(url, reconnect=False) as bus:
            bus.set("kodi.probe.token", {"ok": True, "codec": bus.codec})
        log("token OK (codec %s)" % bus.codec)
    except Exception as e:
        log("token FAILED: %s: %s" % (type(e).__name__, e), xbmc.LOGERROR)


def set_settings(pairs):
    addon = xbmcaddon.Addon("service.ipcbus")
    for pair in pairs:
        key, _, value = pair.partition("=")
        addon.setSetting(key, value)
    log("set done: %s" % ", ".join(pairs))


args = sys.argv[1:]
if args and args[0] == "token":
    token(args[1])
elif args and args[0] == "set":
    set_settings(args[1:])
else:
    log("unknown arguments %r" % (args,), xbmc.LOGERROR)
