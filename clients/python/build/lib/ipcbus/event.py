"""Events delivered to subscription callbacks."""

from typing import Any, NamedTuple, Optional


class Event(NamedTuple):
    """One event of a subscription.

    ``kind`` is ``"val"`` (``key`` now holds ``value``), ``"del"`` (``key`` was
    deleted) or ``"synced"`` (every key that matched at subscribe time has
    been delivered; what follows is live). ``rev`` is the write's rev.
    """

    kind: str
    key: Optional[str]
    value: Any
    rev: int
