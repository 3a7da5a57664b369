"""Runs ``ipcbus serve`` as a child process of Kodi ("Start the bus with
Kodi"), with its data dir (store and token) in the addon's profile folder
and its output appended to ``bus.log`` there."""

import os
import signal
import subprocess
import time
from typing import Optional

import xbmc
import xbmcaddon
import xbmcvfs

from . import ADDON_ID, platforms
from .probe import probe
from .settings import Settings, log, profile_dir

#: How long the child has to say it is listening before start() gives up.
START_TIMEOUT = 15.0
#: How long the child has to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 5.0
#: Holds the child's PID while it runs, so that a bus left over by a Kodi
#: that crashed is ended at the next start instead of holding the port.
PID_FILE = "bus.pid"
#: The line the server logs once it accepts connections.
READY_LINE = "WebSocket at"
#: Settings of the caller's environment that would move the child's data
#: dir or token away from the profile folder, or change its config.
CHILD_UNSET_ENV = ("IPCBUS_DATA_DIR", "IPCBUS_TOKEN_FILE", "IPCBUS_CONFIG", "IPCBUS_HOST", "IPCBUS_PORT")


class BusStartError(Exception):
    """The child bus could not be started; the message says why."""


class ChildBus:
    """At most one ``ipcbus serve`` child; ``start`` and ``stop`` by its PID."""

    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen] = None
        self.data_dir = ""

    @property
    def log_path(self) -> str:
        return os.path.join(profile_dir(), "bus.log")

    @property
    def pid_path(self) -> str:
        return os.path.join(profile_dir(), PID_FILE)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, settings: Settings) -> Optional[str]:
        """Starts the child and waits until it listens, unless a bus already
        answers on the configured port: then it starts none and returns
        that bus's name. :class:`BusStartError` says why no bus could start:
        no binary for this platform, the port held by something else, a
        child that exits or stays silent (with the end of its log)."""
        self.stop()
        self.data_dir = profile_dir()
        end_stale(self.pid_path, self.data_dir)
        answer = probe(settings.host, settings.port)
        if answer.kind == "bus":
            return answer.detail
        if answer.kind == "other":
            raise BusStartError("port %d on %s is in use by something that is not an ipcbus bus (%s): "
                                "choose another port in the settings" % (settings.port, settings.host, answer.detail))
        args = [binary(settings), "serve", "--host", settings.host, "--port", str(settings.port),
                "--data-dir", self.data_dir]
        env = {k: v for k, v in os.environ.items() if k not in CHILD_UNSET_ENV}
        env.setdefault("IPCBUS_LOG", "info")
        with open(self.log_path, "ab") as out:
            offset = out.tell()
            out.write(("--- %s: %s\n" % (time.strftime("%Y-%m-%d %H:%M:%S"), " ".join(args))).encode())
            out.flush()
            try:
                # On Windows, no console window beside Kodi's.
                self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                             stderr=subprocess.STDOUT, env=env, close_fds=True,
                                             creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
            except OSError as e:
                raise BusStartError("cannot run %s: %s" % (args[0], e)) from e
        with open(self.pid_path, "w") as f:
            f.write("%d\n" % self.proc.pid)
        log("started the bus (PID %d): %s" % (self.proc.pid, " ".join(args)))
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            text = self._log_since(offset)
            if READY_LINE in text:
                return None
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise BusStartError("the bus exited with status %s: %s" % (code, _tail(text)))
            if time.monotonic() > deadline:
                self.stop()
                raise BusStartError("the bus did not start listening within %.0f s: %s"
                                    % (START_TIMEOUT, _tail(text)))
            time.sleep(0.05)  # poll interval while the child starts

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL; by the child's PID.
        Then removes its token file, so that a stale token never shadows the
        token of a bus started otherwise (clients look here first in Kodi)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log("the bus (PID %d) ignored SIGTERM for %.0f s: killing it" % (proc.pid, STOP_TIMEOUT))
                proc.kill()
                proc.wait()
        log("stopped the bus (PID %d, status %s)" % (proc.pid, proc.returncode))
        for name in ("token", PID_FILE):
            try:
                os.remove(os.path.join(self.data_dir, name))
            except OSError:
                pass

    def exited(self) -> Optional[int]:
        """The exit status if the child died on its own, else None."""
        if self.proc is not None and self.proc.poll() is not None:
            return self.proc.returncode
        return None


def binary(settings: Settings) -> str:
    """The program to start: the configured one, or else the binary bundled
    for this machine, given its exec bit if it lost it."""
    if settings.binary:
        return settings.binary
    addon_dir = xbmcvfs.translatePath(xbmcaddon.Addon(ADDON_ID).getAddonInfo("path"))
    choice = platforms.choose(addon_dir, android=xbmc.getCondVisibility("System.Platform.Android"))
    if choice.path is None:
        raise BusStartError("%s: %s" % (choice.platform, choice.reason))
    try:
        platforms.check(choice.path)
    except OSError as e:
        raise BusStartError(str(e)) from e
    return choice.path


def end_stale(pid_path: str, data_dir: str) -> None:
    """Ends a bus that an earlier run of Kodi started and left running (Kodi
    crashed or was killed): the PID in ``pid_path``, if /proc says it is
    still an ``ipcbus serve`` with this data dir (a PID can be reused).
    SIGTERM, then SIGKILL after STOP_TIMEOUT. Without /proc (not Linux),
    nothing is checked and nothing is killed."""
    try:
        with open(pid_path) as f:
            pid = int(f.read().strip())
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmdline = f.read().split(b"\0")
    except (OSError, ValueError):
        return
    if b"serve" not in cmdline or data_dir.encode() not in cmdline:
        return
    log("ending the bus (PID %d) that an earlier run of Kodi left running" % pid, xbmc.LOGWARNING)
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)  # poll interval while it shuts down
        if _running(pid):
            os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs: an exited process nobody has reaped yet
    (a zombie, state Z in /proc) does not."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(line for line in text.strip().splitlines()[-lines:]) or "(no output)"
