"""``IPCClientX``: the connection, the error mapping and the old data calls
(set, get, delete, get_data_list, clearall, clearcache)."""

import os
import re
import sys
import threading
import time
import traceback
from collections import namedtuple

from .. import errors as bus_errors
from ..bus import DEFAULT_URL, Bus
from . import keys, values
from .cache import KeyCache
from .errors import (IPCClientError, ObjectNotSerializableError, ObjectTooLargeError, ServerUnavailableError,
                     UnknownError, VarNotFoundError)
from .saved import SavedData

#: The old return type of ``get(..., return_tuple=True)`` and ``delete``.
Data = namedtuple("Data", ["value", "ts", "cached"])
#: The author the old client used outside an addon's default.py.
DEFAULT_AUTHOR = "service.ipcdatastore"


def _log(message):
    try:
        import xbmc  # only inside Kodi
        xbmc.log(message)
    except ImportError:
        import logging
        logging.getLogger("ipcbus.compat").info(message)


def _main_script():
    """The file of the outermost frame: the script Python (or Kodi) ran."""
    frame = sys._getframe()
    while frame.f_back is not None:
        frame = frame.f_back
    return os.path.basename(frame.f_code.co_filename)


def default_author():
    """As the old client: inside Kodi, the addon's id when the running
    script is its ``default.py``; else ``service.ipcdatastore``."""
    try:
        import xbmcaddon  # only inside Kodi
    except ImportError:
        return DEFAULT_AUTHOR
    if _CALLING_MODULE == "default.py":
        try:
            return xbmcaddon.Addon().getAddonInfo("id")
        except Exception:  # a script with no addon of its own (RunScript)
            pass
    return DEFAULT_AUTHOR


# Found once, at import, as the old module did.
_CALLING_MODULE = _main_script()


def bus_url(uri):
    """A bus URL for an old ``PYRO:name@host:port`` URI; ws:// URLs pass."""
    match = re.match(r"^PYRO:[^@]*@(.+):(\d+)$", uri)
    if match is None:
        return uri
    return _url(match.group(1), int(match.group(2)))


def _url(host, port):
    if host in ("localhost", "127.0.0.1") and port == 9099:
        return os.environ.get("IPCBUS_URL") or DEFAULT_URL  # the default: the Bus's own
    return "ws://%s:%d/ws" % ("[%s]" % host if ":" in host else host, port)


class IPCClientX(SavedData):
    """A client of the old API. ``host`` and ``port`` locate the bus
    (``localhost:9099``, the defaults, mean ``$IPCBUS_URL`` or the bus's
    default, ``ws://127.0.0.1:9099/ws``); with ``addon_id`` inside Kodi,
    they are read from that addon's ``host`` and ``port`` settings when it
    has them (``service.ipcbus`` does). ``name`` (the Pyro object) and
    ``datatype`` (the Pyro serializer) mean nothing on the bus and are
    ignored. It connects at its first call, not here, and keeps its
    connection until :meth:`close` (or until it is garbage).
    """

    def __init__(self, addon_id="", name="kodi-IPC", host="localhost", port=9099, datatype="pickle"):
        if addon_id:
            host, port = self._addon_settings(addon_id, host, port)
        self.name, self.host, self.port, self.datatype = name, host, port, datatype
        self.addonname = default_author()
        #: As before: False logs a failure and returns False/None; True raises.
        self.raise_exception = False
        #: The bus client reconnects by itself; 1 (or less) still means one
        #: connect attempt, without the wait for a bus that is starting.
        self.num_of_server_retries = 5
        self.ReturnData = Data
        self._uri = _url(host, port)
        self._lock = threading.Lock()
        self._bus = None
        self._cache = KeyCache()

    @staticmethod
    def _addon_settings(addon_id, host, port):
        try:
            import xbmcaddon  # only inside Kodi
            setting = xbmcaddon.Addon(addon_id).getSetting
            return setting("host") or host, int(setting("port") or port)
        except Exception:  # as the old client: fall back on the arguments
            return host, port

    # -- connection ---------------------------------------------------------

    @property
    def uri(self):
        """The bus URL. Setting it (a ws:// URL, or an old ``PYRO:`` URI)
        drops the current connection."""
        return self._uri

    @uri.setter
    def uri(self, value):
        self.close()
        self._uri = bus_url(value)

    def _connected(self, fail_fast=False):
        with self._lock:
            if self._bus is None:
                fail_fast = fail_fast or self.num_of_server_retries <= 1
                self._bus = Bus(self._uri, fail_fast=True) if fail_fast else Bus(self._uri)
            return self._bus

    def server_available(self):
        """True if the bus answers (one quick attempt when not connected)."""
        try:
            return self._connected(fail_fast=True).connected
        except bus_errors.IpcbusError:
            return False

    def close(self):
        """Ends the connection and the local cache (not in the old API)."""
        self.clearcache()
        with self._lock:
            bus, self._bus = self._bus, None
        if bus is not None:
            bus.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- the old helpers ------------------------------------------------------

    @staticmethod
    def logexception(exc):
        _log(exc.message if isinstance(exc, IPCClientError) else str(exc))
        if getattr(exc, "tb", ""):
            _log(exc.tb)

    @staticmethod
    def get_traceback():
        """The traceback of the exception being handled, as text."""
        return traceback.format_exc()

    def get_exposed_object(self):
        """There is no shared Python object on the bus to hand out."""
        raise NotImplementedError("get_exposed_object: ipcbus shares data, not Python objects; "
                                  "use IPCClientX's methods, or ipcbus.Bus for the new API")

    def _attempt(self, call, failed, name=None, author=None):
        """Runs ``call()``; turns a bus error into the old exception, which
        is logged and then raised or answered by ``failed``."""
        try:
            return call()
        except IPCClientError as e:
            exc = e
        except bus_errors.NotFound:
            exc = VarNotFoundError()
            exc.updatemessage(name, author)
        except bus_errors.TooLarge as e:
            exc = ObjectTooLargeError("the value of author=%r, name=%r is too large for the bus: %s"
                                      % (author, name, e.msg))
        except (bus_errors.Unavailable, bus_errors.Timeout, bus_errors.Unauthorized, bus_errors.Forbidden) as e:
            exc = ServerUnavailableError(self._uri, str(e))
            exc.maybe_applied = bool(getattr(e, "maybe_applied", False))
        except bus_errors.IpcbusError as e:
            exc = UnknownError(e, self.get_traceback())
        self.logexception(exc)
        if self.raise_exception:
            raise exc
        return failed

    # -- the old API ------------------------------------------------------------

    def _update(self, key, write):
        """Reads ``key`` and calls ``write(bus, key, stored, rev)``, which
        writes with ``if_rev=rev``; again if another write came in between,
        so nobody's newer write is undone. Returns the stored value it acted
        on. The next get of the key reads it afresh."""
        bus = self._connected()
        try:
            while True:
                stored, rev = bus.get_with_rev(key)
                try:
                    write(bus, key, stored, rev)
                    return stored
                except bus_errors.RevMismatch:
                    continue  # written meanwhile: act on the newer value
        finally:
            self._cache.forget(key)

    def _key(self, author, name):
        return keys.key_for(str(self.addonname if author is None else author), str(name))

    def set(self, name, value, author=None, persist=False):
        """Stores ``value`` as ``name`` by ``author`` (default: this addon);
        ``persist``: it survives a restart of the bus. True, or False on
        failure."""
        author = self.addonname if author is None else author

        def write():
            key = self._key(author, name)
            try:
                try:
                    envelope = values.wrap(value, time.time(), persist)
                    self._connected().set(key, envelope, persist=bool(persist))
                except (TypeError, ValueError, RecursionError) as e:
                    exc = ObjectNotSerializableError()
                    exc.updatemessage(value, str(e))
                    raise exc
            finally:
                self._cache.forget(key)  # the next get subscribes again: it sees this write
            return True

        return self._attempt(write, False, name, author)

    def get(self, name, author=None, requestor=None, return_tuple=False):
        """The value of ``name`` by ``author`` (default: this addon), or None
        on failure; with ``return_tuple``, ``Data(value, ts, cached)``."""
        author = self.addonname if author is None else author
        requestor = self.addonname if requestor is None else requestor

        def read():
            key = self._key(author, name)
            stored, rev = self._cache.read(self._connected(), key)
            value, ts = values.unwrap(stored)
            return Data(value, ts, self._cache.served(requestor, key, rev))

        data = self._attempt(read, Data(None, None, False), name, author)
        return data if return_tuple else data.value

    def delete(self, name, author=None, return_tuple=False):
        """Deletes ``name`` by ``author``; returns the value it had (or
        ``Data``), None on failure."""
        author = self.addonname if author is None else author

        def remove():
            stored = self._update(self._key(author, name), lambda bus, key, _, rev: bus.delete(key, if_rev=rev))
            value, ts = values.unwrap(stored)
            return Data(value, ts, False)

        data = self._attempt(remove, Data(None, None, False), name, author)
        return data if return_tuple else data.value

    def get_data_list(self, author=None):
        """``{author: [names]}`` of every stored value, or of ``author``'s
        only (then ``{}`` if it has none); None on failure."""

        def listing():
            try:
                found = self._connected().keys(keys.pattern_for(None if author is None else str(author)))
            except bus_errors.BadPattern:
                return {}  # an author too long for any key has no data
            names = {}
            for key in found:
                pair = keys.split(key)
                if pair is not None:
                    names.setdefault(pair[0], []).append(pair[1])
            return names

        return self._attempt(listing, None)

    def clearall(self):
        """Deletes every value stored through this API, by every author
        (not the rest of the bus). True, or False on failure."""

        def clear():
            bus = self._connected()
            for key in bus.keys(keys.pattern_for()):
                try:
                    bus.delete(key)
                except bus_errors.NotFound:
                    pass  # deleted meanwhile
            return True

        self.clearcache()
        return self._attempt(clear, False)

    def clearcache(self):
        """Drops the local cache: the next get of each key reads it afresh,
        and says ``cached=False``. True."""
        self._cache.clear()
        return True
