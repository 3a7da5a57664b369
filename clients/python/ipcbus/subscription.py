"""`Subscription`: one subscription of a :class:`~ipcbus.Bus`, and how it
passes on only what changed when it resumes after a reconnect."""

from __future__ import annotations

from .event import Event

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional

    from .bus import Bus  # bus.py imports this module


class Subscription:
    """A live subscription; ``close()`` ends it. Returned by :meth:`Bus.subscribe`."""

    def __init__(
        self, bus: "Bus", pattern: str, callback: Callable[[Event], None], direct: bool, meta: bool = False
    ) -> None:
        self.pattern = pattern
        #: Whether its ``"val"`` events carry :class:`~ipcbus.Meta`; kept when
        #: it is made again after a reconnect.
        self.meta = meta
        self._bus = bus
        self._callback = callback
        self._direct = direct  # run the callback on the reader thread (Watch only)
        self._server_id: Optional[int] = None
        self.closed = False
        # What the callback was last told of each key, so that after a
        # reconnect the full replay can be reduced to what changed meanwhile.
        self._known: Dict[str, int] = {}
        self._resync: Optional[Dict[str, int]] = None

    def _start_resync(self, store_changed: bool) -> None:
        if store_changed:
            # Revs of another store say nothing: deliver every value again.
            self._known = dict.fromkeys(self._known, -1)
        self._resync = {}

    def _request(self) -> Dict[str, Any]:
        """The ``sub`` request that makes it, on the first connection or a later one."""
        message: Dict[str, Any] = {"op": "sub", "pattern": self.pattern}
        if self.meta:
            message["meta"] = True
        return message

    def _deliver(self, event: Event) -> None:
        if self._direct:
            self._callback(event)
            return
        if self._resync is not None:
            if event.kind == "val":
                self._resync[event.key] = event.rev
                if self._known.get(event.key) == event.rev:
                    return  # delivered before the connection was lost
            elif event.kind == "synced":
                gone = [key for key in self._known if key not in self._resync]
                self._resync = None
                for key in gone:  # deleted while the connection was down
                    del self._known[key]
                    self._put(Event("del", key, None, 0))
                return  # the callback saw "synced" once already
        if event.kind == "val":
            self._known[event.key] = event.rev
        elif event.kind == "del":
            self._known.pop(event.key, None)
        self._put(event)

    def _put(self, event: Event) -> None:
        self._bus._dispatcher.put(self, self._callback, event, event.key)

    def close(self) -> None:
        """Unsubscribes. Idempotent."""
        self._bus._unsubscribe(self)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
