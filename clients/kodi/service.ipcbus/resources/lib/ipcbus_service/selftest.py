"""Self-tests of the connection to the bus.

``quick`` runs at every connect (set, get and subscribe on a reserved key)
so that a broken setup shows up in kodi.log and as a notification at
startup, not later as silently missing data. ``full`` runs more checks and
writes a report for the "Run full self-test" button.
"""

import os
import threading
import time
import uuid
from typing import Any, Callable, List, NamedTuple, Tuple

from .settings import Settings, profile_dir

#: Keys under this prefix are the addon's own; other writers should leave them.
PREFIX = "kodi.selftest."
#: Where the startup self-test's result is published.
RESULT_KEY = PREFIX + "result"
#: The longest any one check waits for the bus.
CHECK_TIMEOUT = 5.0
REPORT_NAME = "selftest.txt"


class Check(NamedTuple):
    name: str
    ok: bool
    detail: str
    ms: float


def _probe_key() -> str:
    return PREFIX + "probe." + uuid.uuid4().hex[:12]


def _timed(name: str, fn: Callable[[], str]) -> Check:
    start = time.monotonic()
    try:
        detail, ok = fn(), True
    except Exception as e:  # every failure is a result, with its message
        detail, ok = "%s: %s" % (type(e).__name__, e), False
    return Check(name, ok, detail, (time.monotonic() - start) * 1000)


def _roundtrip(bus: Any, key: str) -> str:
    """Subscribes to ``key``, sets it, reads it back, and waits for the
    subscription to deliver the value: the three things every user needs."""
    value = {"nonce": uuid.uuid4().hex, "at": time.time()}
    seen = threading.Event()

    def on_event(event: Any) -> None:
        if event.kind == "val" and event.value == value:
            seen.set()

    sub = bus.subscribe(key, on_event)
    try:
        rev = bus.set(key, value, ephemeral=True)
        got = bus.get(key)
        if got != value:
            raise AssertionError("get returned %r, not the value set (%r)" % (got, value))
        if not seen.wait(CHECK_TIMEOUT):
            raise AssertionError("the subscription did not deliver the value within %.0f s" % CHECK_TIMEOUT)
    finally:
        sub.close()
        try:
            bus.delete(key)
        except Exception:
            pass
    return "set (rev %d), get and subscribe on %s" % (rev, key)


def quick(bus: Any) -> Check:
    """The startup self-test; also published on :data:`RESULT_KEY`."""
    check = _timed("set, get and subscribe", lambda: _roundtrip(bus, _probe_key()))
    try:
        bus.set(RESULT_KEY, {"ok": check.ok, "detail": check.detail, "ms": round(check.ms, 1),
                             "at": time.time()}, ephemeral=True)
    except Exception:
        pass  # the check's own result says what is wrong
    return check


def _delete_seen(bus: Any) -> str:
    key = _probe_key()
    events: List[str] = []
    done = threading.Event()

    def on_event(event: Any) -> None:
        events.append(event.kind)
        if event.kind == "del":
            done.set()

    bus.set(key, 1, ephemeral=True)  # gone with the connection if a step fails
    sub = bus.subscribe(key, on_event)
    try:
        bus.delete(key)
        if not done.wait(CHECK_TIMEOUT):
            raise AssertionError("no del event within %.0f s (saw %s)" % (CHECK_TIMEOUT, events))
    finally:
        sub.close()
    return "events %s" % ", ".join(events)


def _keys(bus: Any) -> str:
    key = _probe_key()
    bus.set(key, True, ephemeral=True)
    try:
        found = bus.keys(PREFIX + ">")
        if key not in found:
            raise AssertionError("keys(%r) does not list %s" % (PREFIX + ">", key))
    finally:
        bus.delete(key)
    return "%d key(s) under %s" % (len(found), PREFIX)


def _watch(bus: Any) -> str:
    key = _probe_key()
    bus.set(key, "before", ephemeral=True)
    with bus.watch(key) as mirror:
        mirror.wait_synced(CHECK_TIMEOUT)
        version = mirror.version
        bus.set(key, "after", ephemeral=True)
        deadline = time.monotonic() + CHECK_TIMEOUT
        while mirror.get(key) != "after":
            version = mirror.wait_changed(version, max(0.0, deadline - time.monotonic()))
    bus.delete(key)
    return "the mirror followed a change"


def full(bus: Any, settings: Settings, player_keys: List[str]) -> Tuple[List[Check], str]:
    """Every check, and the path of the report written to the profile folder."""
    checks = [
        _timed("set, get and subscribe", lambda: _roundtrip(bus, _probe_key())),
        _timed("delete reaches subscribers", lambda: _delete_seen(bus)),
        _timed("keys by pattern", lambda: _keys(bus)),
        _timed("watch (local mirror)", lambda: _watch(bus)),
    ]
    path = os.path.join(profile_dir(), REPORT_NAME)
    # Facts, not checks: they cannot fail, so they are not counted.
    lines = ["ipcbus self-test, %s" % time.strftime("%Y-%m-%d %H:%M:%S"), "",
             "settings: %s" % (settings,),
             "connected: %s, codec %s, store %s" % (bus.url, bus.codec, bus.store),
             "player keys present: %s" % (", ".join(player_keys) or "none (nothing played yet)"), ""]
    for c in checks:
        lines.append("%s  %-28s %7.1f ms  %s" % ("PASS" if c.ok else "FAIL", c.name, c.ms, c.detail))
    lines += ["", summary(checks)]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return checks, path


def summary(checks: List[Check]) -> str:
    failed = [c.name for c in checks if not c.ok]
    if not failed:
        return "%d of %d checks passed" % (len(checks), len(checks))
    return "%d of %d checks failed: %s" % (len(failed), len(checks), ", ".join(failed))
