"""A small JSON-RPC client for Kodi over its WebSocket (ws://127.0.0.1:<port>/jsonrpc).

One reader thread routes replies to their callers and keeps every
notification with its arrival time (``time.monotonic()``), so a test can
measure how long after ``Player.OnAVStart`` something else happened.
"""

import itertools
import json
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import websocket

#: How long a call waits for its reply, in seconds.
CALL_TIMEOUT = 10.0


class JsonRpcError(Exception):
    """Kodi answered with an error."""


class Notification:
    """One notification: ``method`` (e.g. ``Player.OnAVStart``), ``data``
    (its ``params.data``) and ``at``, its arrival time (``time.monotonic()``)."""

    def __init__(self, method: str, data: Any, at: float) -> None:
        self.method = method
        self.data = data
        self.at = at

    def __repr__(self) -> str:
        return "Notification(%r, %r, %.3f)" % (self.method, self.data, self.at)


class JsonRpc:
    """A connection to Kodi's JSON-RPC; ``close()`` ends it."""

    def __init__(self, port: int, timeout: float = CALL_TIMEOUT) -> None:
        self.timeout = timeout
        self._ws = websocket.create_connection("ws://127.0.0.1:%d/jsonrpc" % port, timeout=timeout)
        self._ws.settimeout(None)  # the reader blocks; calls time out on their own
        self._ids = itertools.count(1)
        self._lock = threading.Condition()
        self._replies: Dict[int, dict] = {}
        self.notifications: List[Notification] = []
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="kodi-jsonrpc", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                text = self._ws.recv()
            except Exception:
                break
            if not text:
                break
            at = time.monotonic()
            message = json.loads(text)
            with self._lock:
                if "id" in message:
                    self._replies[message["id"]] = message
                elif "method" in message:
                    params = message.get("params") or {}
                    self.notifications.append(Notification(message["method"], params.get("data"), at))
                self._lock.notify_all()
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def call(self, method: str, params: Optional[dict] = None, timeout: Optional[float] = None) -> Any:
        """The ``result`` of ``method``; :class:`JsonRpcError` on an error reply,
        ``TimeoutError`` when none comes within ``timeout``."""
        rid = next(self._ids)
        message: Dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = params
        self._ws.send(json.dumps(message))
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._lock:
            while rid not in self._replies:
                left = deadline - time.monotonic()
                if self._closed:
                    raise ConnectionError("Kodi closed the JSON-RPC connection before answering %s" % method)
                if left <= 0:
                    raise TimeoutError("no reply to %s within %.1f s" % (method, timeout or self.timeout))
                self._lock.wait(left)
            reply = self._replies.pop(rid)
        if "error" in reply:
            raise JsonRpcError("%s: %s" % (method, reply["error"]))
        return reply.get("result")

    def mark(self) -> int:
        """An index into :attr:`notifications`: pass it to :meth:`wait_for` to
        look only at what arrives after now."""
        with self._lock:
            return len(self.notifications)

    def wait_for(self, method: str, since: int = 0, timeout: float = 10.0) -> Notification:
        """The first ``method`` notification at index ``since`` or later,
        waiting up to ``timeout`` seconds for it."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for n in self.notifications[since:]:
                    if n.method == method:
                        return n
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    seen = [n.method for n in self.notifications[since:]]
                    raise TimeoutError("no %s within %.1f s (saw %s)" % (method, timeout, seen))
                self._lock.wait(left)

    def close(self) -> None:
        try:
            self._ws.close(timeout=1)
        except Exception:
            pass


def ping_until_ready(port: int, timeout: float) -> Tuple[float, Optional[Exception]]:
    """Polls until Kodi answers ``JSONRPC.Ping``; returns the seconds it took
    and None, or the time spent and the last error when ``timeout`` ran out."""
    start = time.monotonic()
    last: Optional[Exception] = None
    while time.monotonic() - start < timeout:
        try:
            rpc = JsonRpc(port, timeout=2)
            try:
                if rpc.call("JSONRPC.Ping") == "pong":
                    return time.monotonic() - start, None
            finally:
                rpc.close()
        except Exception as e:  # not listening yet
            last = e
        time.sleep(0.2)  # a poll interval, not a wait for a result
    return time.monotonic() - start, last
