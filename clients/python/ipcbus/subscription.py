"""`Subscription`: one subscription of a :class:`~ipcbus.Bus`, and how it
passes on only what changed when it resumes after a reconnect."""

from __future__ import annotations

import threading

from .event import Event

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional

    from .bus import Bus  # bus.py imports this module


class Subscription:
    """A live subscription; ``close()`` ends it. Returned by :meth:`Bus.subscribe`."""

    def __init__(
        self,
        bus: "Bus",
        pattern: str,
        callback: Optional[Callable[[Event], None]],
        direct: bool,
        meta: bool = False,
        held: Optional[int] = None,
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
        # A subscription named in Bus(subscribe=...) that nobody claimed yet
        # (``held`` is then the bound): its events wait here, at most that
        # many, then the newest per key, as in the callback queue.
        self._held: Optional[List[Event]] = None if held is None else []
        self._held_capacity = held or 0
        self._held_lock = threading.Lock()
        self._inline = False  # claimed by a Watch: the callback runs on the reader thread

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
        if self._held is not None:
            with self._held_lock:
                if self._held is not None:
                    self._hold(event)
                    return
        if self._inline:
            self._callback(event)
        else:
            self._bus._dispatcher.put(self, self._callback, event, event.key)

    def _hold(self, event: Event) -> None:
        held = self._held
        if event.key is not None and len(held) >= self._held_capacity:
            for i in range(len(held) - 1, -1, -1):
                if held[i].key == event.key:
                    held[i] = event
                    self._bus._dispatcher.skipped += 1
                    return
        held.append(event)

    def _claim(self, callback: Callable[[Event], None], inline: bool) -> None:
        """Takes this subscription (one named at connect): ``callback`` gets
        the events that came meanwhile, in order, then the next ones. With
        ``inline`` (a Watch) they are applied at once, on this thread."""
        with self._held_lock:
            self._callback = callback
            self._inline = inline
            for event in self._held or ():
                if inline:
                    callback(event)
                else:
                    self._bus._dispatcher.put(self, callback, event, event.key)
            self._held = None  # last: the reader passes events on itself from now on

    def close(self) -> None:
        """Unsubscribes. Idempotent."""
        self._bus._unsubscribe(self)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
