"""The service: applies the settings (child bus, connection, publishing),
runs the startup self-test at each connect, and keeps all of it current
until Kodi asks it to stop.

Settings changes arrive in ``onSettingsChanged`` on a Kodi thread; the
loop applies them, so that starting and stopping the child bus and
connecting never run on two threads at once.
"""

import threading
import time
from typing import Any, Optional

import xbmc
import xbmcgui

from . import selftest, settings
from .connection import connect
from .publisher import Publisher
from .runner import BusStartError, ChildBus
from .settings import Settings, log

#: How often the loop looks at its flags, in seconds.
TICK = 0.2
#: Waits between connection attempts: the first, and the longest.
RETRY_FIRST = 1.0
RETRY_MAX = 10.0


def notify(message: str, error: bool = True) -> None:
    xbmcgui.Dialog().notification("ipcbus", message,
                                  xbmcgui.NOTIFICATION_ERROR if error else xbmcgui.NOTIFICATION_INFO, 5000)


class Service(xbmc.Monitor):
    def __init__(self) -> None:
        super().__init__()
        self.settings: Optional[Settings] = None
        self.child = ChildBus()
        self.bus: Any = None
        self.publisher = Publisher(lambda: self.bus)
        self._settings_changed = threading.Event()
        self._retry_at = 0.0
        self._retry_wait = RETRY_FIRST
        self._last_error = ""
        self._child_reported = False

    def onSettingsChanged(self) -> None:
        self._settings_changed.set()

    def run(self) -> None:
        log("starting")
        self.apply(settings.load())
        while not self.waitForAbort(TICK):
            if self._settings_changed.is_set():
                self._settings_changed.clear()
                new = settings.load()
                if new != self.settings:
                    log("settings changed: %s" % (new,))
                    self.apply(new)
            if self.bus is None and time.monotonic() >= self._retry_at:
                self.connect()
            status = self.child.exited()
            if status is not None and not self._child_reported:
                self._child_reported = True
                log("the bus exited on its own with status %s; see %s" % (status, self.child.log_path),
                    xbmc.LOGERROR)
                notify("The bus stopped (status %s)" % status)
                self.child.stop()  # removes its token file, which no longer opens anything
        self.shutdown()

    def apply(self, new: Settings) -> None:
        old, self.settings = self.settings, new
        restart_child = old is None or old.child_settings() != new.child_settings()
        if restart_child or old != new:
            self.disconnect()
        if restart_child:
            self.child.stop()
            self._child_reported = False
            if new.start_bus:
                try:
                    other = self.child.start(new)
                    if other is None:
                        log("the bus runs with its data in %s" % self.child.data_dir)
                    else:
                        log("a bus (%s) already answers on port %d: using it, starting none" % (other, new.port))
                except BusStartError as e:
                    log("could not start the bus: %s" % e, xbmc.LOGERROR)
                    notify("Could not start the bus: %s" % e)
        self.publisher.enabled = new.publish_player
        self._retry_at, self._retry_wait, self._last_error = 0.0, RETRY_FIRST, ""
        if self.bus is None:
            self.connect()
        elif old is not None and old.publish_player != new.publish_player:
            self._publish_switched()

    def _publish_switched(self) -> None:
        if self.settings is not None and self.settings.publish_player:
            self.publisher.publish_now()
        else:
            for key in ("kodi.player.state", "kodi.player.item"):
                try:
                    self.bus.delete(key)
                except Exception:
                    pass

    def connect(self) -> None:
        assert self.settings is not None
        try:
            self.bus = connect(self.settings)
        except Exception as e:  # Unavailable, Unauthorized, an unreadable token file...
            self.bus = None
            if str(e) != self._last_error:  # once per distinct failure, not at every retry
                self._last_error = str(e)
                log("cannot connect to %s: %s (will keep trying)" % (self.settings.url, e), xbmc.LOGWARNING)
                notify("Cannot connect to the bus: %s" % e)
            self._retry_at = time.monotonic() + self._retry_wait
            self._retry_wait = min(self._retry_wait * 2, RETRY_MAX)
            return
        self._last_error, self._retry_wait = "", RETRY_FIRST
        log("connected to %s (codec %s)" % (self.settings.url, self.bus.codec))
        check = selftest.quick(self.bus)
        if check.ok:
            log("self-test passed in %.0f ms: %s" % (check.ms, check.detail))
        else:
            log("self-test FAILED: %s" % check.detail, xbmc.LOGERROR)
            notify("Self-test failed: %s" % check.detail)
        if self.settings.publish_player:
            self.publisher.publish_now()
        else:
            self._publish_switched()

    def disconnect(self) -> None:
        bus, self.bus = self.bus, None
        if bus is not None:
            bus.close()  # the bus deletes this connection's ephemeral keys

    def shutdown(self) -> None:
        log("stopping")
        self.disconnect()
        self.child.stop()
        log("stopped")


def run() -> None:
    Service().run()
