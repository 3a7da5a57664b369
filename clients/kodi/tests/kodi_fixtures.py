"""Fixtures for the tests against a real Kodi, imported by the test
modules: a test clip and a recorder of subscription events. (Kodi
instances are per module: a Kodi start costs about 8 s.)

Not a conftest.py: pytest runs this folder together with
clients/python/tests, whose modules import names from their own conftest,
and two rootless conftest modules would shadow each other."""

import pathlib
import tempfile
import threading
import time
from typing import Any, List, Tuple

import pytest

import harness


@pytest.fixture(scope="session")
def clip():
    folder = tempfile.mkdtemp(prefix="kodi-clip-")
    path = harness.make_clip(str(pathlib.Path(folder) / "ipcbus-clip.mp4"))
    yield path
    pathlib.Path(path).unlink()
    pathlib.Path(folder).rmdir()


class Recorder:
    """Subscription events with their arrival times (``time.monotonic()``)."""

    def __init__(self) -> None:
        self.events: List[Tuple[float, Any]] = []
        self._cond = threading.Condition()

    def __call__(self, event: Any) -> None:
        with self._cond:
            self.events.append((time.monotonic(), event))
            self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def wait_for(self, match, since: int = 0, timeout: float = harness.WAIT, what: str = "an event"):
        """The first ``(at, event)`` from index ``since`` on for which
        ``match(event)`` is true."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for at, event in self.events[since:]:
                    if match(event):
                        return at, event
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(e.kind, e.key, e.value) for _, e in self.events[since:]]
                    raise AssertionError("no %s within %.1f s; saw %s" % (what, timeout, seen))
                self._cond.wait(left)


@pytest.fixture
def recorder():
    return Recorder()
