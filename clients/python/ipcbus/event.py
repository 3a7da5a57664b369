"""Events delivered to subscription callbacks."""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False
if TYPE_CHECKING:  # what type checkers see: the same fields, typed
    from typing import Any, NamedTuple, Optional

    class _Meta(NamedTuple):
        age_ms: Optional[int] = None
        persist: bool = False
        ephemeral: bool = False
        ttl_ms: Optional[int] = None

    class _Event(NamedTuple):
        kind: str
        key: Optional[str]
        value: Any
        rev: int
        meta: Optional[Meta] = None
else:  # at run time without typing, whose import a plugin's cold start would pay for
    _Meta = namedtuple("Meta", ("age_ms", "persist", "ephemeral", "ttl_ms"), defaults=(None, False, False, None))
    _Event = namedtuple("Event", ("kind", "key", "value", "rev", "meta"), defaults=(None,))


class Meta(_Meta):
    """What the server says of the write a ``"val"`` event carries, for a
    subscription made with ``meta=True`` (docs/protocol.md §4).

    ``age_ms``: how many ms before the event was sent the value was written
    (``None`` when the server does not know, as for a value restored from
    its data file). ``persist``: the value is in the data file and survives
    a restart. ``ephemeral``: it is deleted when the session that wrote it
    ends. ``ttl_ms``: how many ms were left until it expires when the event
    was sent (``None``: no expiry). ``age_ms`` and ``ttl_ms`` count from when
    the server sent the event: add them to the time it arrived.
    """

    __slots__ = ()


def meta_from_wire(meta: Any) -> Optional[Meta]:
    """The ``meta`` map of a ``val`` event as a :class:`Meta`; fields it does
    not know are ignored. ``None`` when there is none."""
    if not isinstance(meta, dict):
        return None
    age_ms, ttl_ms = meta.get("age_ms"), meta.get("ttl_ms")
    return Meta(
        age_ms=int(age_ms) if age_ms is not None else None,
        persist=meta.get("persist") is True,
        ephemeral=meta.get("ephemeral") is True,
        ttl_ms=int(ttl_ms) if ttl_ms is not None else None,
    )


class Event(_Event):
    """One event of a subscription.

    ``kind`` is ``"val"`` (``key`` now holds ``value``), ``"del"`` (``key`` was
    deleted) or ``"synced"`` (every key that matched at subscribe time has
    been delivered; what follows is live). ``rev`` is the write's rev.
    ``meta`` is a :class:`Meta` on the ``"val"`` events of a subscription made
    with ``meta=True``, else ``None`` (also when the server is older than
    ``meta`` and sent none: not known, rather than no options).
    """

    __slots__ = ()
