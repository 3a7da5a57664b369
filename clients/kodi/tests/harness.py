"""The processes the Kodi tests run, each started and ended by its PID:

- :class:`Server`: ``ipcbus serve`` (the debug binary) on a free port with
  its own data dir, and optionally the Kodi bridge (``--kodi``);
- :class:`Kodi`: Xvfb on a free display (``-displayfd``) and the real
  ``kodi.bin`` with a throwaway home, JSON-RPC on a free port, the other
  network services off, and the addons installed and enabled (or none).

Every wait polls with a timeout; none sleeps to wait for a result.
"""

import http.server
import json
import os
import pathlib
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from typing import Callable, Dict, List, Optional, TypeVar
from xml.sax.saxutils import escape

from jsonrpc import JsonRpc, ping_until_ready

REPO = pathlib.Path(__file__).resolve().parents[3]
KODI_DIR = REPO / "clients" / "kodi"
FIXTURE_ADDONS = pathlib.Path(__file__).resolve().parent / "addons"
EXAMPLE_ADDONS = REPO / "examples" / "kodi"
sys.path.insert(0, str(REPO / "clients" / "python"))

KODI_BIN = "/usr/lib/x86_64-linux-gnu/kodi/kodi.bin"
#: Kodi answers JSON-RPC about 8 s after its start on 2 cores.
KODI_START_TIMEOUT = 60.0
#: After Application.Quit, Kodi is gone in about 4 s.
KODI_QUIT_TIMEOUT = 20.0
#: How long a test waits for an expected event.
WAIT = 15.0
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Environment that would point a client or server elsewhere.
IPCBUS_ENV = ("IPCBUS_TOKEN", "IPCBUS_TOKEN_FILE", "IPCBUS_DATA_DIR", "IPCBUS_URL", "IPCBUS_CONFIG",
              "IPCBUS_HOST", "IPCBUS_PORT")

T = TypeVar("T")


def wait_until(check: Callable[[], Optional[T]], timeout: float, what: str, interval: float = 0.05) -> T:
    """Polls ``check`` until it returns something truthy; AssertionError
    naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def binary() -> str:
    path = os.environ.get("IPCBUS_BIN") or str(REPO / "target" / "debug" / "ipcbus")
    if not os.path.exists(path):
        raise RuntimeError("ipcbus binary not found at %s: run `cargo build -p ipcbus` first" % path)
    return path


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in IPCBUS_ENV}
    env.update(extra)
    return env


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def stop_process(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, wait, SIGKILL: by the PID of a process this harness started."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Server:
    """``ipcbus serve`` on a free port; ``token`` is read from its data dir.
    With ``kodi``, a JSON-RPC URL, it runs the Kodi bridge (``--kodi``)."""

    def __init__(self, kodi: Optional[str] = None) -> None:
        self.port = free_port()
        self.url = "ws://127.0.0.1:%d/ws" % self.port
        self.data_dir = tempfile.mkdtemp(prefix="ipcbus-kodi-")
        self.token_file = os.path.join(self.data_dir, "token")
        self.log = os.path.join(self.data_dir, "serve.log")
        args = [binary(), "serve", "--port", str(self.port), "--no-selftest", "--data-dir", self.data_dir]
        if kodi is not None:
            args += ["--kodi", kodi]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=clean_env(IPCBUS_LOG="info"))
        try:
            wait_until(lambda: self._ready(), WAIT, "ipcbus serve to listen on %d" % self.port)
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError("ipcbus serve exited: %s" % pathlib.Path(self.log).read_text())
        return "WebSocket at" in pathlib.Path(self.log).read_text()

    @property
    def token(self) -> str:
        return pathlib.Path(self.token_file).read_text().strip()

    def health(self) -> Dict[str, object]:
        """``GET /health``, parsed."""
        with urllib.request.urlopen("http://127.0.0.1:%d/health" % self.port, timeout=5) as r:
            return json.loads(r.read().decode())

    def wait_kodi(self, status: str, timeout: float = WAIT) -> None:
        """Polls ``/health`` until its ``kodi`` (the bridge's connection) is ``status``."""
        seen = []

        def check() -> bool:
            now = self.health().get("kodi")
            if not seen or seen[-1] != now:
                seen.append(now)
            return now == status
        try:
            wait_until(check, timeout, "/health kodi %r" % status)
        except AssertionError as e:
            raise AssertionError("%s (saw %s)" % (e, seen))

    def log_text(self) -> str:
        return pathlib.Path(self.log).read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc, WAIT)
        shutil.rmtree(self.data_dir, ignore_errors=True)


class _NotABus(http.server.BaseHTTPRequestHandler):
    """An HTTP server that is not a bus: 404 for everything."""

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def not_a_bus(port: int = 0) -> http.server.HTTPServer:
    """Another program's HTTP server on ``port`` (0: a free one), serving on
    a thread until ``shutdown()`` and ``server_close()``."""
    web = http.server.HTTPServer(("127.0.0.1", port), _NotABus)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    return web


def make_clip(path: str) -> str:
    """A 5 s 640x360 25 fps H.264 clip."""
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "testsrc=duration=5:size=640x360:rate=25",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", path], check=True, timeout=60)
    return path


def built_addons(dest: pathlib.Path, zips: Optional[List[str]] = None) -> None:
    """Unpacks ``zips`` (by default the addons' zips that build.sh makes)
    into ``dest``, as Kodi's "Install from zip file" would. Python's
    extraction keeps no file mode, the worst case of Kodi's (which may drop
    the exec bit)."""
    if zips is None:
        out = subprocess.run(["bash", str(KODI_DIR / "build.sh")], capture_output=True, text=True,
                             check=True, timeout=60)
        zips = out.stdout.split()
    for archive in zips:
        with zipfile.ZipFile(archive) as z:
            z.extractall(str(dest))


def settings_xml(values: Dict[str, object]) -> str:
    """An addon's userdata settings.xml (the format Kodi 19+ writes)."""
    def text(v: object) -> str:
        return ("true" if v else "false") if isinstance(v, bool) else escape(str(v))
    body = "".join('    <setting id="%s">%s</setting>\n' % (k, text(v)) for k, v in values.items())
    return '<settings version="2">\n%s</settings>\n' % body


class Kodi:
    """A real Kodi under Xvfb with service.ipcbus, script.module.ipcbus and
    the test addons installed and enabled; with ``addons=False``, none of
    them installed (for ``ipcbus serve --kodi``, which needs none); with
    ``zips``, those addons and script.module.websocket only.

    :meth:`stop` then :meth:`start` restarts Kodi with the same home and
    JSON-RPC port."""

    ADDONS = ("script.module.websocket", "script.module.ipcbus", "service.ipcbus", "script.ipcbus.probe",
              "script.ipcbus.nowplaying")

    def __init__(self, addon_settings: Optional[Dict[str, object]], env: Optional[Dict[str, str]] = None,
                 addons: bool = True, zips: Optional[List[str]] = None) -> None:
        #: Extra environment for Kodi (and so for its addons).
        self.env = env or {}
        self.home = pathlib.Path(tempfile.mkdtemp(prefix="kodi-home-"))
        self.userdata = self.home / ".kodi" / "userdata"
        self.profile = self.userdata / "addon_data" / "service.ipcbus"
        self.log_path = self.home / ".kodi" / "temp" / "kodi.log"
        self.port = free_port()
        self.xvfb: Optional[subprocess.Popen] = None
        self.proc: Optional[subprocess.Popen] = None
        self.rpc: Optional[JsonRpc] = None
        #: The addons installed, enabled at each start.
        self.addons = self.ADDONS if addons else ()
        folder = self.home / ".kodi" / "addons"
        folder.mkdir(parents=True)
        self.userdata.mkdir(parents=True)
        (self.userdata / "advancedsettings.xml").write_text(
            '<advancedsettings version="1.0"><jsonrpc><compactoutput>true</compactoutput>'
            '<tcpport>%d</tcpport></jsonrpc></advancedsettings>\n' % self.port)
        if not addons:
            return
        built_addons(folder, zips)
        shutil.copytree(str(FIXTURE_ADDONS / "script.module.websocket"), str(folder / "script.module.websocket"))
        if zips is None:
            shutil.copytree(str(FIXTURE_ADDONS / "script.ipcbus.probe"), str(folder / "script.ipcbus.probe"))
            shutil.copytree(str(EXAMPLE_ADDONS / "script.ipcbus.nowplaying"),
                            str(folder / "script.ipcbus.nowplaying"))
        else:  # a user's install: these zips, and the websocket module Kodi's repository gives
            self.addons = ("script.module.websocket",) + tuple(
                zipfile.ZipFile(z).namelist()[0].split("/", 1)[0] for z in zips)
        if addon_settings is not None:  # None: a fresh install, no setting ever changed
            self.profile.mkdir(parents=True)
            self.write_settings(addon_settings)

    def write_settings(self, values: Dict[str, object]) -> None:
        (self.profile / "settings.xml").write_text(settings_xml(values))

    def start(self) -> "Kodi":
        read, write = os.pipe()
        self.xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x720x24",
                                      "-nolisten", "tcp"], pass_fds=(write,),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write)
        with os.fdopen(read) as f:  # Xvfb writes the display it chose once it is ready
            if not select.select([f], [], [], WAIT)[0]:
                stop_process(self.xvfb, WAIT)
                raise AssertionError("Xvfb did not say its display within %s s" % WAIT)
            display = f.readline().strip()
        if not display:
            raise AssertionError("Xvfb did not start")
        # The system PATH: Kodi's embedded Python finds its prefix through
        # the PATH, and a python3 from pyenv or a venv first there would hide
        # /usr/lib/python3/dist-packages (python3-websocket).
        env = clean_env(HOME=str(self.home), DISPLAY=":" + display, KODI_AE_SINK="NULL", PATH=SYSTEM_PATH)
        env.update(self.env)
        with open(str(self.home / "kodi.out"), "wb") as out:
            self.proc = subprocess.Popen([KODI_BIN, "--windowing=x11"], env=env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        took, error = ping_until_ready(self.port, KODI_START_TIMEOUT)
        if error is not None:
            self.stop()
            raise AssertionError("Kodi did not answer JSON-RPC within %.0f s: %s" % (took, error))
        self.rpc = JsonRpc(self.port)
        # JSON-RPC needs services.esenabled (and so the event server on UDP
        # 9777); the webserver, UPnP and AirPlay are off by default; these
        # two are on: turn them off. (A partial guisettings.xml written
        # before the start is thrown away by Kodi 20.)
        for setting in ("services.zeroconf", "services.wsdiscovery"):
            self.rpc.call("Settings.SetSettingValue", {"setting": setting, "value": False})
        for addon in self.addons:
            self.rpc.call("Addons.SetAddonEnabled", {"addonid": addon, "enabled": True})
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_log(self, text: str, timeout: float = WAIT, since: int = 0) -> str:
        """The first kodi.log line at or after offset ``since`` containing ``text``."""
        def find() -> Optional[str]:
            for line in self.log()[since:].splitlines():
                if text in line:
                    return line
            return None
        try:
            return wait_until(find, timeout, "%r in kodi.log" % text, interval=0.1)
        except AssertionError as e:
            raise AssertionError("%s; the log's lines about addons and errors:\n%s" % (e, self.log_excerpt()))

    def log_excerpt(self, lines: int = 40) -> str:
        """The end of kodi.log's lines about the ipcbus addons and errors."""
        keep = [line for line in self.log().splitlines()
                if "ipcbus" in line or " error " in line or "Traceback" in line or line.startswith(" ")]
        return "\n".join(keep[-lines:])

    def log_size(self) -> int:
        return len(self.log())

    def run_addon(self, addon: str, *params: str) -> None:
        assert self.rpc is not None
        self.rpc.call("Addons.ExecuteAddon", {"addonid": addon, "params": list(params), "wait": False})

    def dialog_open(self) -> bool:
        assert self.rpc is not None
        return self.rpc.call("XBMC.GetInfoBooleans", {"booleans": ["Window.IsActive(okdialog)"]})[
            "Window.IsActive(okdialog)"]

    def close_dialog(self) -> None:
        """Presses OK on the ok dialog an action showed."""
        wait_until(self.dialog_open, WAIT, "the ok dialog")
        assert self.rpc is not None
        self.rpc.call("Input.Select")
        wait_until(lambda: not self.dialog_open(), WAIT, "the ok dialog to close")

    def stop(self) -> None:
        """Application.Quit, then SIGKILL by PID if Kodi is still there; then Xvfb."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                rpc = self.rpc or JsonRpc(self.port, timeout=5)
                rpc.call("Application.Quit", timeout=5)
            except Exception:
                pass  # Kodi may close the socket before it answers
            try:
                self.proc.wait(timeout=KODI_QUIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._end_child_bus()
        if self.rpc is not None:
            self.rpc.close()
        if self.xvfb is not None:
            stop_process(self.xvfb, WAIT)

    def crash(self) -> None:
        """SIGKILL Kodi, as a crash would: nothing of it runs its shutdown,
        so a bus it started is left running. Then stops Xvfb (``start``
        makes a new one)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        if self.rpc is not None:
            self.rpc.close()
            self.rpc = None
        if self.xvfb is not None:
            stop_process(self.xvfb, WAIT)

    def _end_child_bus(self) -> None:
        """After a SIGKILL, Kodi could not stop the bus service.ipcbus
        started: end it by the PID the addon wrote."""
        try:
            pid = int((self.profile / "bus.pid").read_text().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass

    def remove(self) -> None:
        self.stop()
        if os.environ.get("KODI_TEST_KEEP"):  # for debugging: keep the home and its logs
            print("kept Kodi's home in %s" % self.home)
            return
        shutil.rmtree(str(self.home), ignore_errors=True)
