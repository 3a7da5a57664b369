"""What the artifact tests share: where scripts/dist.sh put its output, and
a served ``ipcbus`` (any of the built binaries, run natively, under
qemu-user or under Wine) that the host's Python client talks to."""

import contextlib
import hashlib
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from typing import Iterator, List, Optional

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
DIST = REPO / "target" / "dist"
TOOLCHAIN = REPO / "target" / "cross-toolchain"
sys.path.insert(0, str(REPO / "clients" / "python"))  # the host's test client
sys.path.insert(0, str(REPO / "clients" / "kodi" / "tests"))  # the Kodi harness

from harness import wait_until  # noqa: E402

#: How long a test waits for an expected event; qemu-user and Wine start
#: slowly (the first Wine start makes its prefix: about 10 s).
WAIT = 60.0
VERSION = re.search(r'^version = "(.*)"', (REPO / "Cargo.toml").read_text(), re.M).group(1)


def artifact(name: str) -> pathlib.Path:
    path = DIST / name
    if not path.exists():
        pytest.fail("%s is missing: run `bash scripts/dist.sh` first" % path)
    return path


def sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(str(path), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wine_command(exe: pathlib.Path) -> List[str]:
    """Runs a Windows console program under the Wine 8 that
    scripts/dist/toolchain.sh unpacked, with the stub DLL it needs
    (scripts/dist/wine-run.sh)."""
    return ["bash", str(REPO / "scripts" / "dist" / "wine-run.sh"), str(exe)]


class Served:
    """``ipcbus serve`` on a free port (``--port 0``), with its own data dir,
    started by ``command`` (the binary, or a runner and the binary)."""

    def __init__(self, command: List[str], windows: bool = False, extra: Optional[List[str]] = None) -> None:
        self.dir = tempfile.mkdtemp(prefix="ipcbus-dist-")
        os.chmod(self.dir, 0o700)
        data = os.path.join(self.dir, "data")
        arg = "Z:" + data.replace("/", "\\") if windows else data  # Wine maps Z: to /
        self.token_file = os.path.join(data, "token")
        self.log = os.path.join(self.dir, "serve.log")
        env = {k: v for k, v in os.environ.items() if not k.startswith("IPCBUS_")}
        env["IPCBUS_LOG"] = "info"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(command + ["serve", "--port", "0", "--data-dir", arg] + (extra or []),
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)
        try:
            line = wait_until(lambda: self._listening(), WAIT, "ipcbus serve to listen")
            self.url = re.search(r"WebSocket at (ws://\S+)", line).group(1)
        except BaseException:
            self.stop()
            raise

    def text(self) -> str:
        return pathlib.Path(self.log).read_text(errors="replace")

    def _listening(self) -> Optional[str]:
        text = self.text()
        for line in text.splitlines():
            if "WebSocket at" in line:
                return line
        if self.proc.poll() is not None:
            raise AssertionError("ipcbus serve exited with %s:\n%s" % (self.proc.returncode, text))
        return None

    @property
    def token(self) -> str:
        return pathlib.Path(self.token_file).read_text().strip()

    def stop(self) -> None:
        """SIGTERM to its process group (the runner and what it started)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def serving(command: List[str], windows: bool = False, extra: Optional[List[str]] = None) -> Iterator[Served]:
    """A :class:`Served` for the ``with`` block, stopped after it."""
    served = Served(command, windows=windows, extra=extra)
    try:
        yield served
    finally:
        served.stop()


def free_listener() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s
