"""`Watch`: a local mirror of a pattern, kept current by push."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from . import errors

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Iterator, Optional, Set

    from .event import Event


class Watch(Mapping):
    """A read-only dict of every key matching a pattern. Reads are local;
    the bus pushes every change. This is the old datastore's combined
    server/client cache, without polling. ``close()`` ends it."""

    def __init__(self, bus: Any, pattern: str) -> None:
        from .bus import Subscription

        self._data: Dict[str, Any] = {}
        self._revs: Dict[str, int] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._synced = threading.Event()
        self._resync: Optional[Set[str]] = None
        self.version = 0
        named = bus._claim(pattern)  # one made at connect (Bus(subscribe=...)): no request
        if named is not None:
            self._sub = named
            named._claim(self._apply, inline=True)
        else:
            self._sub = bus._subscribe(Subscription(bus, pattern, self._apply, direct=True))

    def _apply(self, event: Event) -> None:
        with self._lock:
            if event.kind == "resync":
                # After a reconnect the replay starts over: keys it does not
                # mention were deleted meanwhile.
                self._resync = set()
                return
            if event.kind == "val":
                self._data[event.key] = event.value
                self._revs[event.key] = event.rev
                if self._resync is not None:
                    self._resync.add(event.key)
            elif event.kind == "del":
                self._data.pop(event.key, None)
                self._revs.pop(event.key, None)
            elif event.kind == "synced":
                if self._resync is not None:
                    for key in set(self._data) - self._resync:
                        del self._data[key]
                        del self._revs[key]
                    self._resync = None
                self._synced.set()
            self.version += 1
            self._changed.notify_all()

    def wait_synced(self, timeout: Optional[float] = None) -> None:
        """Blocks until the initial state has arrived."""
        if not self._synced.wait(timeout):
            raise errors.Timeout("watch of %r not synced in time" % self._sub.pattern)

    def wait_changed(self, since_version: int, timeout: Optional[float] = None) -> int:
        """Blocks until ``version`` exceeds ``since_version``; returns it."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.version > since_version, timeout):
                raise errors.Timeout("no change to %r in time" % self._sub.pattern)
            return self.version

    def rev(self, key: str) -> int:
        """The rev of ``key``'s value, or :class:`NotFound`."""
        with self._lock:
            if key not in self._revs:
                raise errors.NotFound("no such key", rev=0)
            return self._revs[key]

    def __getitem__(self, key: str) -> Any:
        with self._lock:
            return self._data[key]

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(sorted(self._data))

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def close(self) -> None:
        self._sub.close()

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
