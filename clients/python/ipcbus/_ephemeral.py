"""The ephemeral keys a `Bus` set, so that it can set them again after a
reconnect: the server deletes a connection's ephemeral keys when that
connection ends, but to the program that set them, nothing ended.

The write after a reconnect is conditional: it happens only if the key has
no value (the server deleted it, or restarted), or still holds this Bus's
own last write (the server has not yet noticed that the old connection is
gone; the new write takes the key over). If another client wrote the key
meanwhile, it is left alone and forgotten.
"""

from __future__ import annotations

import math
import threading
import time

from . import _log as log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

#: The largest ``ttl_ms`` the protocol accepts.
MAX_TTL_MS = 2 ** 53 - 1


def ttl_ms(seconds: float) -> int:
    """A ``ttl`` in seconds as the wire's ``ttl_ms``: at least 1."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or math.isnan(seconds) or seconds < 0:
        raise ValueError("ttl must be a number of seconds >= 0, not %r" % (seconds,))
    if math.isinf(seconds):
        return MAX_TTL_MS
    return min(max(1, int(round(seconds * 1000))), MAX_TTL_MS)


class Claim:
    """One ephemeral write: what to write again, and what the server said."""

    __slots__ = ("value", "rev", "deadline")

    def __init__(self, value: Any, ttl: Optional[float]) -> None:
        self.value = value
        #: The rev of the write once acknowledged; None until then.
        self.rev: Optional[int] = None
        #: When a ``ttl`` runs out (``time.monotonic()``), or None.
        self.deadline = None if ttl is None else time.monotonic() + ttl


class EphemeralKeys:
    """key → the last ephemeral value this Bus asked for. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claims: Dict[str, Claim] = {}

    def begin(self, key: str, value: Any, ttl: Optional[float]) -> Tuple[Claim, Optional[Claim]]:
        """Records an ephemeral set about to be sent; returns it and the
        claim it replaces (to put back if the server refuses the write)."""
        claim = Claim(value, ttl)
        with self._lock:
            previous = self._claims.get(key)
            self._claims[key] = claim
        return claim, previous

    def acked(self, key: str, claim: Claim, rev: int) -> None:
        with self._lock:
            if self._claims.get(key) is claim:
                claim.rev = rev

    def refused(self, key: str, claim: Claim, previous: Optional[Claim]) -> None:
        """The server refused the write: the key is as it was."""
        with self._lock:
            if self._claims.get(key) is claim:
                if previous is None:
                    del self._claims[key]
                else:
                    self._claims[key] = previous

    def forget(self, key: str, claim: Optional[Claim] = None) -> None:
        """This Bus deleted the key or set it non-ephemeral (or, with
        ``claim``, that claim cannot be restored)."""
        with self._lock:
            if claim is None or self._claims.get(key) is claim:
                self._claims.pop(key, None)

    def keys(self) -> List[str]:
        with self._lock:
            return sorted(self._claims)

    def reassert(self, exchange: Callable[[List[dict]], List[dict]], same_store: bool) -> None:
        """Writes every claim again on a new connection. ``exchange`` sends
        requests and returns their replies in order; it raises if the
        connection fails, and then nothing is forgotten."""
        with self._lock:
            claims = list(self._claims.items())
        now = time.monotonic()
        round_one: List[Tuple[str, Claim, dict]] = []
        for key, claim in claims:
            message = {"op": "set", "key": key, "value": claim.value, "ephemeral": True, "if_rev": 0}
            if claim.deadline is not None:
                left = claim.deadline - now
                if left <= 0:
                    self.forget(key, claim)  # expired meanwhile, as it would have anyway
                    continue
                message["ttl_ms"] = ttl_ms(left)
            round_one.append((key, claim, message))
        round_two = []
        for (key, claim, message), reply in zip(round_one, exchange([m for _, _, m in round_one])):
            error = reply.get("error") or {}
            # The old connection's write is still there: take it over.
            ours = same_store and claim.rev is not None and error.get("rev") == claim.rev
            if not reply.get("ok") and error.get("code") == "rev_mismatch" and ours:
                round_two.append((key, claim, dict(message, if_rev=claim.rev)))
            else:
                self._settle(key, claim, reply)
        for (key, claim, message), reply in zip(round_two, exchange([m for _, _, m in round_two])):
            self._settle(key, claim, reply)

    def _settle(self, key: str, claim: Claim, reply: dict) -> None:
        if reply.get("ok"):
            self.acked(key, claim, int(reply["rev"]))
            return
        error = reply.get("error") or {}
        log.warning("ipcbus: ephemeral key %s not set again after reconnecting (%s: %s); forgetting it",
                    key, error.get("code"), error.get("msg"))
        self.forget(key, claim)
