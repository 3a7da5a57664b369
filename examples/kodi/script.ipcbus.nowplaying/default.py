"""Shows what is playing, kept current by a subscription to kodi.player.item.

Run: copy this folder to ~/.kodi/addons/ next to script.module.ipcbus and
service.ipcbus (see docs/kodi.md), enable it, then start it from Add-ons >
Program add-ons or with RunScript(script.ipcbus.nowplaying). Back closes it.
The bus is $IPCBUS_URL, else ws://127.0.0.1:9099/ws; the token is found
with no setting when service.ipcbus runs the bus or it runs as Kodi's user.
"""

import xbmc
import xbmcgui

import ipcbus

#: Kodi's action ids for Back and Esc.
CLOSE_ACTIONS = (xbmcgui.ACTION_PREVIOUS_MENU, xbmcgui.ACTION_NAV_BACK)


def describe(item):
    """One line about the item of kodi.player.item (None: nothing plays)."""
    if item is None:
        return "Nothing is playing"
    text = item["title"]
    if item["showtitle"]:
        text = "%s S%02dE%02d %s" % (item["showtitle"], item["season"] or 0, item["episode"] or 0, text)
    video = item["video"]
    if video and video["width"]:
        text += " (%dx%d, %s)" % (video["width"], video["height"], video["codec"])
    return text


class NowPlaying(xbmcgui.WindowDialog):
    def __init__(self):
        super().__init__()
        self.closed = False
        self.label = xbmcgui.ControlLabel(60, 60, 1160, 60, "Connecting...")
        self.addControl(self.label)

    def show_item(self, item):
        text = describe(item)
        self.label.setLabel(text)
        xbmc.log("[script.ipcbus.nowplaying] showing: %s" % text, xbmc.LOGINFO)

    def onAction(self, action):
        if action.getId() in CLOSE_ACTIONS:
            self.closed = True
            self.close()


def main():
    window = NowPlaying()
    try:
        bus = ipcbus.Bus()
    except ipcbus.IpcbusError as e:
        xbmcgui.Dialog().ok("Now playing", "No bus: %s" % e)
        return
    with bus:
        # The first event is the current value (or, if nothing plays, only
        # "synced"); then every change. Callbacks run on the client's thread.
        seen = []

        def on_event(event):
            if event.kind == "val":
                seen.append(event.rev)
                window.show_item(event.value)
            elif event.kind == "del" or (event.kind == "synced" and not seen):
                window.show_item(None)

        with bus.subscribe("kodi.player.item", on_event):
            # Not doModal(): the script must also end when Kodi quits.
            window.show()
            monitor = xbmc.Monitor()
            while not window.closed and not monitor.waitForAbort(0.2):
                pass
            window.close()
    del window
    xbmc.log("[script.ipcbus.nowplaying] closed", xbmc.LOGINFO)


main()
