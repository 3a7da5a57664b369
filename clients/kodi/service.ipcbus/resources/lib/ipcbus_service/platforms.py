"""Which of the bundled ``ipcbus`` binaries fits this machine.

The addon's zip carries one static binary per supported platform under
``bin/<platform>/`` (docs/kodi.md says why one zip holds them all). This
module only decides; it imports nothing from Kodi, so that the choice is
unit-tested for every (system, machine) pair.
"""

import os
import platform
from typing import NamedTuple, Optional

#: Folder in the addon holding the binaries, one subfolder per platform.
BIN_DIR = "bin"

#: ``platform.machine()`` values (lower-cased) per bundled Linux build. The
#: static binaries need no library of the system, so an aarch64 kernel runs
#: the aarch64 build even under a 32-bit userland (LibreELEC and Raspberry
#: Pi OS on a Pi 3/4/5), and "armv8l" (a 32-bit process on a 64-bit CPU)
#: runs the armv7 build.
LINUX = {
    "x86_64": "linux-x86_64",
    "amd64": "linux-x86_64",
    "aarch64": "linux-aarch64",
    "arm64": "linux-aarch64",
    "armv7l": "linux-armv7",
    "armv7": "linux-armv7",
    "armv8l": "linux-armv7",
}
#: The same for Windows, where ``platform.machine()`` says "AMD64".
WINDOWS = {
    "amd64": "windows-x86_64",
    "x86_64": "windows-x86_64",
}


class Choice(NamedTuple):
    """The bundled binary for this machine, or why there is none."""

    #: Absolute path of the binary; None when no bundled build fits.
    path: Optional[str]
    #: The platform's name as the user would recognise it ("Linux aarch64").
    platform: str
    #: Why there is no binary (empty when there is one).
    reason: str = ""


def choose(addon_dir: str, system: Optional[str] = None, machine: Optional[str] = None,
           android: bool = False) -> Choice:
    """The bundled binary for ``system``/``machine`` (by default this
    machine's, from :mod:`platform`). ``android`` is Kodi's own answer
    (``System.Platform.Android``): Android reports itself as Linux.

    The path is returned whether or not the file exists; :func:`check`
    says whether it can run."""
    system = system if system is not None else platform.system()
    machine = machine if machine is not None else platform.machine()
    name = "%s %s" % (system or "unknown system", machine or "unknown CPU")
    if android:
        return Choice(None, "Android " + machine, "Android lets no app start a program from its data "
                      "folder; run ipcbus on another machine and set its host and port")
    table = {"linux": LINUX, "windows": WINDOWS}.get(system.lower())
    if table is None:
        return Choice(None, name, "there is no bundled bus for %s; install ipcbus yourself and set "
                      "\"Path to the ipcbus binary\"" % (system or "this system"))
    folder = table.get(machine.lower())
    if folder is None:
        hint = " (ARMv6: Raspberry Pi 1 and Zero)" if machine.lower().startswith("armv6") else ""
        return Choice(None, name, "there is no bundled bus for the %s CPU%s; install ipcbus yourself "
                      "and set \"Path to the ipcbus binary\"" % (machine or "unknown", hint))
    exe = "ipcbus.exe" if folder.startswith("windows") else "ipcbus"
    return Choice(os.path.join(addon_dir, BIN_DIR, folder, exe), name)


def check(path: str) -> None:
    """Raises ``OSError`` with a clear message unless ``path`` is a file that
    can be run. Gives the file its exec bit when it lacks one (Kodi's zip
    extraction may drop it); on Windows nothing needs setting."""
    if not os.path.isfile(path):
        raise OSError("the bundled bus %s is missing: reinstall the addon" % path)
    if os.name == "nt" or os.access(path, os.X_OK):
        return
    try:
        mode = os.stat(path).st_mode
        os.chmod(path, mode | 0o111)
    except OSError as e:
        raise OSError("%s is not executable and its mode cannot be changed (%s)" % (path, e.strerror)) from e
    if not os.access(path, os.X_OK):
        raise OSError("%s is not executable even with its exec bit set: is its folder on a noexec "
                      "mount?" % path)
