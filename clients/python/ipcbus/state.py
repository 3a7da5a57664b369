"""A Bus's connection state, and who is told when it changes
(docs/clients.md, "The reconnect contract")."""

from __future__ import annotations

import threading

from . import _log as log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Optional

    OnState = Callable[[str, str], None]

#: The first connect is under way.
CONNECTING = "connecting"
#: Connected: requests go out at once.
OPEN = "open"
#: The connection was lost; the Bus is connecting again. Calls wait.
RECONNECTING = "reconnecting"
#: Closed by the program, or for good (no reconnect, or the first connect
#: gave up). Nothing follows.
CLOSED = "closed"


class State:
    """The current state and its reason; calls ``on_state(state, reason)``
    at every change, on the thread that made it. Nothing follows
    ``closed``."""

    def __init__(self, on_state: Optional[OnState]) -> None:
        self._on_state = on_state
        self._lock = threading.Lock()
        self.name = ""  # Bus reports CONNECTING first
        self.reason = ""

    def set(self, name: str, reason: str) -> None:
        with self._lock:
            if self.name == CLOSED or (self.name, self.reason) == (name, reason):
                return
            self.name, self.reason = name, reason
        log.debug("ipcbus: %s (%s)", name, reason)
        if self._on_state is not None:
            try:
                self._on_state(name, reason)
            except Exception:  # the program's code must not stop the Bus
                log.exception("ipcbus: on_state callback failed")
