"""How an old value is stored: an envelope ``{"v": value, "ts": time}``.

The old store pickled any object and stamped it with the time of the write
(``ts``, a float from ``time.time()``), which every reader saw. The bus
stores data (MessagePack or JSON) and has no write time, so the envelope
carries it: every reader gets the writer's ``ts``, as before, and an
unchanged value keeps its ``ts`` however often it is read. Tuples would
come back as lists, so the envelope lists where they were (``"tuples"``: a
path of list indexes and dict keys for each one, outermost first) and they
come back as tuples. ``"persist": true`` marks a value set with
``persist=True``, so that savedata/restoredata keep it persisted.

A value under ``ipcx.`` that is not an envelope (written by other code) is
returned as it is, with ``ts`` None.
"""

from __future__ import annotations

import copy

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: a plugin's cold start would pay for it
    from typing import Any, List, Optional, Tuple

_FIELDS = frozenset(["v", "ts", "tuples", "persist"])


def _tuple_paths(value: Any, path: List[Any], out: List[List[Any]]) -> None:
    if isinstance(value, tuple):
        out.append(list(path))
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _tuple_paths(item, path + [i], out)
    elif isinstance(value, dict):
        for k, item in value.items():
            _tuple_paths(item, path + [k], out)


def wrap(value: Any, ts: float, persist: bool) -> dict:
    """The envelope to store. A value nested past Python's recursion limit
    raises ``RecursionError`` (the codec could not take it either)."""
    envelope = {"v": value, "ts": ts}
    paths: List[List[Any]] = []
    _tuple_paths(value, [], paths)
    if paths:
        envelope["tuples"] = paths
    if persist:
        envelope["persist"] = True
    return envelope


def is_envelope(stored: Any) -> bool:
    return isinstance(stored, dict) and "v" in stored and "ts" in stored and set(stored) <= _FIELDS


def unwrap(stored: Any) -> Tuple[Any, Optional[float]]:
    """``(value, ts)`` of a stored envelope, as a fresh copy (the caller may
    change it without changing the cache)."""
    if not is_envelope(stored):
        return copy.deepcopy(stored), None
    value = copy.deepcopy(stored["v"])
    # Innermost first, so that each tuple is made from its finished items.
    for path in sorted(stored.get("tuples") or [], key=len, reverse=True):
        if not path:
            value = tuple(value) if isinstance(value, list) else value
            continue
        try:
            parent = value
            for step in path[:-1]:
                parent = parent[step]
            if isinstance(parent[path[-1]], list):
                parent[path[-1]] = tuple(parent[path[-1]])
        except (KeyError, IndexError, TypeError):
            pass  # a dict key the codec turned into a string (JSON): stays a list
    ts = stored["ts"]
    return value, float(ts) if isinstance(ts, (int, float)) else None


def with_persist(stored: Any, persist: bool) -> Any:
    """``stored`` marked (or unmarked) as persisted."""
    if not is_envelope(stored):
        return stored
    stored = dict(stored)
    if persist:
        stored["persist"] = True
    else:
        stored.pop("persist", None)
    return stored
