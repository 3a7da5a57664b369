"""service.ipcbus's choice of bundled binary (``ipcbus_service.platforms``)
for every supported (system, machine) pair and the unsupported ones, its
exec-bit repair, and the port probe (``ipcbus_service.probe``): unit
tests, with no Kodi."""

import os
import socket
import subprocess
import sys

import pytest

import harness

sys.path.insert(0, str(harness.KODI_DIR / "service.ipcbus" / "resources" / "lib"))

from ipcbus_service import platforms, probe  # noqa: E402

ADDON = "/addons/service.ipcbus"

SUPPORTED = [
    ("Linux", "x86_64", "bin/linux-x86_64/ipcbus"),
    ("Linux", "AMD64", "bin/linux-x86_64/ipcbus"),
    ("Linux", "aarch64", "bin/linux-aarch64/ipcbus"),
    ("Linux", "arm64", "bin/linux-aarch64/ipcbus"),
    ("Linux", "armv7l", "bin/linux-armv7/ipcbus"),
    ("Linux", "armv8l", "bin/linux-armv7/ipcbus"),
    ("Windows", "AMD64", "bin/windows-x86_64/ipcbus.exe"),
    ("Windows", "x86_64", "bin/windows-x86_64/ipcbus.exe"),
]
UNSUPPORTED = [
    ("Linux", "armv6l", "armv6l CPU (ARMv6: Raspberry Pi 1 and Zero)"),
    ("Linux", "i686", "no bundled bus for the i686 CPU"),
    ("Linux", "riscv64", "no bundled bus for the riscv64 CPU"),
    ("Windows", "ARM64", "no bundled bus for the ARM64 CPU"),
    ("Windows", "x86", "no bundled bus for the x86 CPU"),
    ("Darwin", "arm64", "no bundled bus for Darwin"),
    ("FreeBSD", "amd64", "no bundled bus for FreeBSD"),
    ("", "", "no bundled bus for this system"),
]


@pytest.mark.parametrize("system,machine,path", SUPPORTED)
def test_each_supported_platform_gets_its_binary(system, machine, path):
    choice = platforms.choose(ADDON, system, machine)
    assert choice.path == os.path.join(ADDON, *path.split("/"))
    assert choice.reason == ""


@pytest.mark.parametrize("system,machine,says", UNSUPPORTED)
def test_an_unsupported_platform_says_why(system, machine, says):
    choice = platforms.choose(ADDON, system, machine)
    assert choice.path is None
    assert says in choice.reason and "Path to the ipcbus binary" in choice.reason


def test_android_is_unsupported_whatever_its_cpu():
    choice = platforms.choose(ADDON, "Linux", "aarch64", android=True)
    assert choice.path is None and choice.platform == "Android aarch64"
    assert "Android" in choice.reason and "host and port" in choice.reason


def test_this_machine_is_supported():
    assert platforms.choose(ADDON).path == os.path.join(ADDON, "bin", "linux-x86_64", "ipcbus")


def test_a_binary_without_its_exec_bit_gets_it(tmp_path):
    exe = tmp_path / "ipcbus"
    exe.write_text("#!/bin/sh\necho ran\n")
    exe.chmod(0o644)  # as Kodi's zip extraction leaves it
    platforms.check(str(exe))
    assert os.stat(str(exe)).st_mode & 0o111 == 0o111
    assert subprocess.run([str(exe)], capture_output=True, text=True).stdout == "ran\n"


def test_a_missing_binary_says_reinstall(tmp_path):
    with pytest.raises(OSError, match="is missing: reinstall the addon"):
        platforms.check(str(tmp_path / "ipcbus"))


def test_a_binary_on_a_noexec_mount_says_so(tmp_path):
    """A tmpfs mounted noexec in a mount namespace of its own (needs root,
    as CI has)."""
    code = ("import os, sys; sys.path.insert(0, %r); from ipcbus_service import platforms\n"
            "open('/mnt/ipcbus', 'w').write('#!/bin/sh\\n')\n"
            "try:\n    platforms.check('/mnt/ipcbus')\nexcept OSError as e:\n    print(e)\n"
            % str(harness.KODI_DIR / "service.ipcbus" / "resources" / "lib"))
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                          "mount -t tmpfs -o noexec tmpfs /mnt && exec %s -c \"$0\"" % sys.executable, code],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "is not executable even with its exec bit set: is its folder on a noexec mount?" in out.stdout


def test_probe_tells_a_bus_from_a_free_port_and_from_something_else():
    server = harness.Server()
    try:
        assert probe.probe("127.0.0.1", server.port).kind == "bus"
        assert probe.probe("127.0.0.1", server.port).detail.startswith("ipcbus/")
    finally:
        server.stop()
    assert probe.probe("127.0.0.1", server.port) == probe.Answer("free", "connection refused")

    web = harness.not_a_bus()
    try:
        answer = probe.probe("127.0.0.1", web.server_address[1])
        assert answer.kind == "other" and answer.detail.startswith("HTTP 404 from BaseHTTP"), answer
    finally:
        web.shutdown()
        web.server_close()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts (in the kernel's backlog) and never answers
    try:
        answer = probe.probe("127.0.0.1", silent.getsockname()[1], timeout=0.5)
        assert answer.kind == "other" and "no HTTP answer" in answer.detail, answer
    finally:
        silent.close()
