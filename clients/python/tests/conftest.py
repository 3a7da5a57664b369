"""Fixtures: the real `ipcbus` binary, started on a free port per test, with
its token on. The `server` fixture points $IPCBUS_DATA_DIR at the server's
data dir, so clients find the token by the default lookup, as on a real
installation; tests of the other ways to give the token say so."""

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

#: Set by scripts/dist/tests: the suite runs against the ipcbus package
#: installed (from the wheel) in the running Python, not the source folder.
INSTALLED = os.environ.get("IPCBUS_TEST_INSTALLED") == "1"
SOURCE = pathlib.Path(__file__).resolve().parents[1]
if not INSTALLED:
    sys.path.insert(0, str(SOURCE))

import ipcbus  # noqa: E402

if INSTALLED and SOURCE in pathlib.Path(ipcbus.__file__).resolve().parents:
    raise RuntimeError("IPCBUS_TEST_INSTALLED is set, yet ipcbus comes from the source folder %s" % SOURCE)

REPO = pathlib.Path(__file__).resolve().parents[3]
#: How long a test waits for an expected event.
WAIT = 10.0
#: Where clients look for the token; tests set them for clients only.
CLIENT_ENV = ("IPCBUS_TOKEN", "IPCBUS_TOKEN_FILE", "IPCBUS_DATA_DIR", "IPCBUS_URL")


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
    """A running `ipcbus serve`; `stop()` sends SIGTERM, `start()` again reuses
    the port, the data dir and so the token."""

    def __init__(self, port: int, *args: str) -> None:
        self.port = port
        self.url = "ws://127.0.0.1:%d/ws" % port
        self.args = list(args)
        self.proc = None
        #: Kept across restarts, like a real installation's.
        self.data_dir = tempfile.mkdtemp(prefix="ipcbus-py-")
        #: Made by the server at its first start.
        self.token_file = os.path.join(self.data_dir, "token")

    @property
    def token(self) -> str:
        with open(self.token_file) as f:
            return f.read().strip()

    def start(self) -> "Server":
        self.proc = subprocess.Popen(
            [binary(), "serve", "--port", str(self.port), "--no-selftest",
             "--data-dir", self.data_dir] + self.args,
            stderr=subprocess.PIPE,
            text=True,
            # The tests' client settings are not the server's: it has --data-dir.
            env=dict({k: v for k, v in os.environ.items() if k not in CLIENT_ENV}, IPCBUS_LOG="info"),
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


    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_token_in_environment(monkeypatch):
    """Tests see none of the caller's token settings, and no real token file."""
    for name in CLIENT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", tempfile.gettempdir() + "/ipcbus-py-no-such-dir")


@pytest.fixture
def server(monkeypatch):
    s = Server(free_port()).start()
    monkeypatch.setenv("IPCBUS_DATA_DIR", s.data_dir)  # the zero-config lookup finds s.token_file
    yield s
    s.remove()


@pytest.fixture(params=[ipcbus.MSGPACK, ipcbus.JSON], ids=["msgpack", "json"])
def bus(request, server):
    with ipcbus.Bus(server.url, codec=request.param) as b:
        yield b


def accept_loop(listener, accepted):
    """Calls ``accepted(client socket)`` for each connection ``listener``
    takes, until it is closed."""
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        accepted(client)


class Proxy:
    """A TCP proxy to the server whose connections the test can cut."""

    def __init__(self, target_port):
        self.target = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        self.url = "ws://127.0.0.1:%d/ws" % self.port
        self.conns = []
        #: Server-side sockets that `cut(hold_server_side=True)` left open.
        self.held = []
        #: While set, what the server sends is dropped (`mute()`).
        self.muted = threading.Event()
        #: While set, new connections are closed at once (`pause()`).
        self.paused = threading.Event()
        #: While clear, what the server sends waits in the proxy (`hold()`).
        self.flowing = threading.Event()
        self.flowing.set()
        #: Bytes passed on from clients to the server, under `_forwarded`.
        self.forwarded = 0
        self._forwarded = threading.Condition()
        threading.Thread(target=accept_loop, args=(self.listener, self._accepted), daemon=True).start()

    def _accepted(self, client):
        if self.paused.is_set():
            client.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target))
        self.conns.append((client, upstream))
        for a, b, muted in ((client, upstream, None), (upstream, client, self.muted)):
            threading.Thread(target=self._pipe, args=(a, b, muted), daemon=True).start()

    def _pipe(self, a, b, muted):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                if muted is None:
                    b.sendall(data)
                    with self._forwarded:
                        self.forwarded += len(data)
                        self._forwarded.notify_all()
                elif not muted.is_set():
                    self.flowing.wait()
                    b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            if s not in self.held:
                try:
                    s.close()
                except OSError:
                    pass

    def wait_forwarded(self, count):
        """Waits until `count` bytes went from clients to the server."""
        with self._forwarded:
            assert self._forwarded.wait_for(lambda: self.forwarded >= count, WAIT), self.forwarded

    def pause(self):
        """Cuts every connection and closes new ones at once, until `resume()`:
        the bus is away for the clients of this proxy."""
        self.paused.set()
        self.cut()

    def resume(self):
        self.paused.clear()

    def mute(self):
        """Drops whatever the server sends from now on (its replies are lost
        on the way), until `cut()`."""
        self.muted.set()

    def hold(self):
        """Holds back what the server sends (its replies are late, not
        lost), until `unhold()` passes it on."""
        self.flowing.clear()

    def unhold(self):
        self.flowing.set()

    def cut(self, hold_server_side=False):
        """Cuts every connection. With `hold_server_side`, the client sees
        its connection end but the server does not (as when a network goes
        away), until `release()`."""
        conns, self.conns = self.conns, []
        for client, upstream in conns:
            if hold_server_side:
                self.held.append(upstream)
            for s in (client,) if hold_server_side else (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        # Only now: what the server sent while muted (a reply the test means
        # to lose) must not slip through before the connection is gone.
        self.muted.clear()
        self.flowing.set()

    def release(self):
        """Ends the server side of the connections `cut` held."""
        held, self.held = self.held, []
        for s in held:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass
