"""The release binaries, as a user gets them: each archive matches its
SHA-256, each Linux build is static (no interpreter, no shared library),
and each one, on its own CPU (the host, qemu-user) or under Wine, serves
`ipcbus serve` on loopback, passes its startup self-test and serves the
host's Python client: set, get, subscribe (replay, then live). The Kodi
bridge's ``ws://localhost:...`` is resolved by the static build itself."""

import os
import pathlib
import queue
import shutil
import signal
import subprocess
import tarfile
import zipfile

import pytest

from conftest import VERSION, WAIT, Served, artifact, free_listener, serving, sha256, wait_until, wine_command

import ipcbus

LINUX = {
    # name: runner (qemu-user, with no sysroot: a dynamic binary would not even start)
    "x86_64-linux": [],
    "aarch64-linux": ["qemu-aarch64"],
    "armv7-linux": ["qemu-arm"],
}
ARCH = {"x86_64-linux": "X86-64", "aarch64-linux": "AArch64", "armv7-linux": "ARM"}


def unpack(name: str, tmp_path: pathlib.Path) -> pathlib.Path:
    """Checks the archive's .sha256 as `sha256sum -c` would, then unpacks it."""
    archive = artifact(name)
    expected = (archive.parent / (name + ".sha256")).read_text().split()
    assert expected == [sha256(archive), name]
    if name.endswith(".zip"):
        with zipfile.ZipFile(str(archive)) as z:
            z.extractall(str(tmp_path))
    else:
        with tarfile.open(str(archive)) as t:
            t.extractall(str(tmp_path))
    folder = tmp_path / name.rsplit(".tar.gz", 1)[0].rsplit(".zip", 1)[0]
    assert (folder / "README.md").exists()
    return folder


def end_to_end(served: Served) -> None:
    """set, get, subscribe: the current value first (replay), then synced,
    then a change (live); and the startup self-test passed."""
    with ipcbus.Bus(served.url, token=served.token, timeout=WAIT, reconnect=False) as bus:
        bus.set("dist.check.a", {"n": 1, "text": "zwölf"})
        assert bus.get("dist.check.a") == {"n": 1, "text": "zwölf"}
        events: "queue.Queue[ipcbus.Event]" = queue.Queue()
        sub = bus.subscribe("dist.check.>", events.put)
        first = events.get(timeout=WAIT)
        assert (first.kind, first.key, first.value) == ("val", "dist.check.a", {"n": 1, "text": "zwölf"})
        assert events.get(timeout=WAIT).kind == "synced"
        rev = bus.set("dist.check.b", [1, 2, 3])
        live = events.get(timeout=WAIT)
        assert (live.kind, live.key, live.value, live.rev) == ("val", "dist.check.b", [1, 2, 3], rev)
        sub.close()
    wait_until(lambda: "self-test passed" in served.text(), WAIT, "the startup self-test")


@pytest.mark.parametrize("name", sorted(LINUX))
def test_linux_build_is_static_and_serves(name, tmp_path):
    folder = unpack("ipcbus-%s-%s.tar.gz" % (VERSION, name), tmp_path)
    exe = folder / "ipcbus"
    assert os.access(str(exe), os.X_OK)
    header = subprocess.run(["readelf", "-h", "-l", "-d", str(exe)], capture_output=True, text=True).stdout
    assert "Machine:" in header and ARCH[name] in header.split("Machine:", 1)[1].splitlines()[0], header
    # No program interpreter and no shared library: plain static, or
    # static-pie (which keeps a dynamic section only to relocate itself).
    assert "INTERP" not in header and "(NEEDED)" not in header, header
    assert (folder / "ipcbus.service").exists()
    serve_and_check(LINUX[name] + [str(exe)])


def serve_and_check(command, windows=False):
    """Serves with ``--kodi ws://localhost:PORT/jsonrpc``, runs the end-to-end
    check, and checks that the Kodi bridge reached PORT by that name (the
    static glibc build resolves it with no NSS module)."""
    kodi = free_listener()  # stands for Kodi's JSON-RPC
    kodi.settimeout(WAIT)
    with kodi, serving(command, windows=windows,
                       extra=["--kodi", "ws://localhost:%d/jsonrpc" % kodi.getsockname()[1]]) as served:
        end_to_end(served)
        conn, _ = kodi.accept()
        with conn:
            conn.settimeout(WAIT)
            request = conn.recv(4096).decode(errors="replace")
        assert request.startswith("GET /jsonrpc HTTP/1.1") and "Host: localhost:" in request, request


def test_windows_build_serves_under_wine(tmp_path):
    folder = unpack("ipcbus-%s-x86_64-windows.zip" % VERSION, tmp_path)
    exe = folder / "ipcbus.exe"
    dlls = subprocess.run(["x86_64-w64-mingw32-objdump", "-p", str(exe)], capture_output=True,
                          text=True).stdout
    imported = sorted({line.split(":", 1)[1].strip().lower() for line in dlls.splitlines() if "DLL Name:" in line})
    # Only what Windows itself has: no MinGW runtime DLL to ship beside it.
    assert not [d for d in imported if "gcc" in d or "winpthread" in d or "stdc++" in d], imported
    serve_and_check(wine_command(exe), windows=True)


def test_windows_build_keeps_its_token_in_appdata(tmp_path):
    """With no --data-dir, as README's Install says: %APPDATA%\\ipcbus\\token,
    in a Wine prefix of its own."""
    folder = unpack("ipcbus-%s-x86_64-windows.zip" % VERSION, tmp_path)
    prefix = tmp_path / "prefix"
    env = dict(os.environ, WINEPREFIX=str(prefix), IPCBUS_LOG="info")
    env = {k: v for k, v in env.items() if k not in ("IPCBUS_DATA_DIR", "IPCBUS_TOKEN_FILE")}
    log = tmp_path / "serve.log"
    with open(str(log), "wb") as out:
        proc = subprocess.Popen(wine_command(folder / "ipcbus.exe") + ["serve", "--port", "0", "--no-selftest"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        token = wait_until(lambda: next(prefix.glob("drive_c/users/*/AppData/Roaming/ipcbus/token"), None),
                           WAIT, "the token in %APPDATA%\\ipcbus")
        assert len(token.read_text().strip()) == 64
        wait_until(lambda: "WebSocket at" in log.read_text(errors="replace"), WAIT, "the bus to listen")
        assert "AppData\\Roaming\\ipcbus\\token" in log.read_text(errors="replace")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=WAIT)


def test_a_corrupt_download_is_caught_by_its_checksum(tmp_path):
    name = "ipcbus-%s-aarch64-linux.tar.gz" % VERSION
    shutil.copy(str(artifact(name)), str(tmp_path / name))
    shutil.copy(str(artifact(name + ".sha256")), str(tmp_path / (name + ".sha256")))
    ok = subprocess.run(["sha256sum", "-c", name + ".sha256"], cwd=str(tmp_path), capture_output=True, text=True)
    assert ok.returncode == 0 and ": OK" in ok.stdout
    with open(str(tmp_path / name), "r+b") as f:  # one flipped bit
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 1]))
    bad = subprocess.run(["sha256sum", "-c", name + ".sha256"], cwd=str(tmp_path), capture_output=True, text=True)
    assert bad.returncode != 0 and "FAILED" in bad.stdout, bad.stdout + bad.stderr


def test_sha256sums_lists_every_artifact():
    listed = {line.split()[1] for line in artifact("SHA256SUMS").read_text().splitlines()}
    for name in ["ipcbus-%s-%s.tar.gz" % (VERSION, n) for n in LINUX] + ["ipcbus-%s-x86_64-windows.zip" % VERSION]:
        assert name in listed
    for name in listed:
        assert (artifact(name).parent / (pathlib.Path(name).name + ".sha256")).exists()
        assert sha256(artifact(name)) in artifact("SHA256SUMS").read_text()


#: Bytes per binary and for the Kodi zip that carries all four, by profile
#: (docs/benchmarks.md, Binary size: the NATS client of the backplane added
#: about 4.5 MB to each binary; issue 17 aims at 6 MB stripped).
BUDGET = {"dist": (14 << 20, 24 << 20), "dist-check": (20 << 20, 36 << 20)}


def test_sizes_are_within_the_budget(tmp_path):
    per_binary, kodi_zip = BUDGET[artifact("PROFILE").read_text().strip()]
    sizes = {}
    for name in list(LINUX) + ["x86_64-windows"]:
        archive = "ipcbus-%s-%s.%s" % (VERSION, name, "zip" if "windows" in name else "tar.gz")
        folder = unpack(archive, tmp_path / name)
        exe = folder / ("ipcbus.exe" if "windows" in name else "ipcbus")
        sizes[name] = exe.stat().st_size
    assert max(sizes.values()) <= per_binary, sizes
    assert artifact("kodi/service.ipcbus-%s.zip" % VERSION).stat().st_size <= kodi_zip
