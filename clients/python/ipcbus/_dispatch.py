"""The thread that runs subscription callbacks, so that a callback may itself
call the bus (the reader thread must stay free to deliver replies).

Bound and policy when full: ``capacity`` events wait at most. Past that, an
event for a (subscription, key) that already has one waiting replaces it:
intermediate revs are skipped and the newest state wins, as on the server.
Other events are still queued, so every key's latest state is delivered.
"""

from __future__ import annotations

import threading
from collections import deque

from . import _log as log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Deque, Optional, Tuple

    Item = Tuple[Any, Callable[[Any], None], Any, Optional[str]]  # (owner, callback, event, key)


class Dispatcher:
    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: Deque[Item] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self.skipped = 0
        # Started by the first event: a program that only reads and writes
        # (a plugin's one `get`) never needs it.
        self._thread: Optional[threading.Thread] = None

    def put(self, owner: Any, callback: Callable[[Any], None], event: Any, key: Optional[str]) -> None:
        with self._cond:
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, name="ipcbus-callbacks", daemon=True)
                self._thread.start()
            if key is not None and len(self._items) >= self._capacity:
                for i in range(len(self._items) - 1, -1, -1):
                    o, _, _, k = self._items[i]
                    if o is owner and k == key:
                        self._items[i] = (owner, callback, event, key)
                        self.skipped += 1
                        return
            self._items.append((owner, callback, event, key))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and threading.current_thread() is not thread:
            thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._stopped:
                    self._cond.wait()
                if self._stopped and not self._items:
                    return
                _, callback, event, _ = self._items.popleft()
            try:
                callback(event)
            except Exception:  # a broken callback must not stop the others
                log.exception("ipcbus: subscription callback failed")
