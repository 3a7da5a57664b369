"""Fixtures: the real `ipcbus` binary, started on a free port per test."""

import os
import pathlib
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import ipcbus  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[3]
#: How long a test waits for an expected event.
WAIT = 10.0


def binary() -> str:
    path = os.environ.get("IPCBUS_BIN") or str(REPO / "target" / "debug" / "ipcbus")
    if not os.path.exists(path):
        pytest.fail("ipcbus binary not found at %s: run `cargo build -p ipcbus` first" % path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running `ipcbus serve`; `stop()` sends SIGTERM, `start()` again reuses the port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = "ws://127.0.0.1:%d/ws" % port
        self.proc = None
        #: Kept across restarts, like a real installation's.
        self.data_dir = tempfile.mkdtemp(prefix="ipcbus-py-")

    def start(self) -> "Server":
        self.proc = subprocess.Popen(
            [binary(), "serve", "--port", str(self.port), "--no-selftest",
             "--data-dir", self.data_dir, "--no-auth"],
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, IPCBUS_LOG="info"),
        )
        lines: "queue.Queue[str]" = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in self.proc.stderr], daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=WAIT)
            except queue.Empty:
                self.stop()
                pytest.fail("ipcbus serve did not start")
            if "WebSocket at" in line:
                return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def server():
    s = Server(free_port()).start()
    yield s
    s.stop()
    shutil.rmtree(s.data_dir, ignore_errors=True)


@pytest.fixture(params=[ipcbus.MSGPACK, ipcbus.JSON], ids=["msgpack", "json"])
def bus(request, server):
    with ipcbus.Bus(server.url, codec=request.param) as b:
        yield b
