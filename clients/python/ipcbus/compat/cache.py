"""The old client's local cache, made of push-fed Watches: reads are local
and kept current by the bus, instead of asking the server "has it changed?"
at every read as the old datastore did."""

import threading

from .. import errors


class KeyCache:
    """One :class:`ipcbus.Watch` per key read, and the rev each requestor
    was last given (what the old server's cache tracked), for ``cached``."""

    def __init__(self):
        self._lock = threading.Lock()
        self._watches = {}  # bus key -> (Watch, bus session it was made in)
        self._served = {}  # (requestor, bus key) -> rev last returned to it

    def read(self, bus, key):
        """``(stored value, rev)`` of ``key``, or ``NotFound``. The first read
        of a key subscribes to it (one round trip); later reads are local."""
        watch = self._watch(bus, key)
        if watch is None:
            return bus.get_with_rev(key)
        while True:
            rev = watch.rev(key)  # NotFound when the key has no value
            try:
                stored = watch[key]
            except KeyError:  # deleted between the two reads
                raise errors.NotFound("no such key", rev=0)
            if watch.rev(key) == rev:  # the value and the rev belong together
                return stored, rev

    def served(self, requestor, key, rev):
        """Records that ``requestor`` got ``rev`` of ``key``; True if that is
        the rev it got last time (the old ``cached``)."""
        with self._lock:
            same = self._served.get((requestor, key)) == rev
            self._served[(requestor, key)] = rev
            return same

    def _watch(self, bus, key):
        # A Watch is trusted only within the connection it was made on:
        # during and just after a reconnect it may lag, so it is made anew
        # (its replay is the round trip).
        with self._lock:
            held = self._watches.get(key)
        if held is not None and bus.connected and held[1] == bus.session:
            return held[0]
        if held is not None:
            self.forget(key)
        session = bus.session
        try:
            watch = bus.watch(key)
        except errors.LimitReached:
            return None  # the connection's subscriptions are used up: no cache for this key
        try:
            watch.wait_synced(bus.timeout)
        except errors.Timeout:
            watch.close()
            raise
        with self._lock:
            if key not in self._watches:
                self._watches[key] = (watch, session)
                return watch
            other = self._watches[key][0]
        watch.close()  # another thread made one meanwhile
        return other

    def forget(self, key):
        """Drops the Watch of ``key``: the next read subscribes again, which
        the bus orders after this connection's writes (read your writes)."""
        with self._lock:
            held = self._watches.pop(key, None)
        if held is not None:
            held[0].close()

    def clear(self):
        """Drops every Watch and what each requestor was given."""
        with self._lock:
            held, self._watches = self._watches, {}
            self._served = {}
        for watch, _ in held.values():
            watch.close()
