"""The Kodi zips of target/dist/kodi in a real Kodi 20, installed as Kodi
installs a zip (unpacked into addons/, which keeps no file mode; enabled
over JSON-RPC), with no setting ever changed: the bundled bus starts with
Kodi on the default port, answers with its token, publishes what is
playing, and stops when Kodi quits. Then the two cases where it must not
start one: a bus already answers on the port (used), or something else
holds it (a clear message).

These use the default port, 9099, as a fresh install does: they fail
early if something on this machine already listens there."""

import functools
import http.server
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import zipfile

import pytest

from conftest import REPO, VERSION, artifact

import harness  # noqa: E402 (on the path through conftest)
import ipcbus  # noqa: E402
from kodi_fixtures import clip  # noqa: E402,F401 (fixture)

PORT = 9099
URL = "ws://127.0.0.1:%d/ws" % PORT


def zips():
    return [str(artifact("kodi/%s-%s.zip" % (addon, VERSION))) for addon in ("script.module.ipcbus", "service.ipcbus")]


def listening() -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", PORT)) == 0


@pytest.fixture
def port_free():
    if listening():
        pytest.fail("something already listens on 127.0.0.1:%d, the port a fresh install uses" % PORT)


def test_a_fresh_kodi_runs_the_bundled_bus(port_free, clip):
    kodi = harness.Kodi(None, zips=zips())
    try:
        bundled = kodi.home / ".kodi" / "addons" / "service.ipcbus" / "bin" / "linux-x86_64" / "ipcbus"
        assert not os.access(str(bundled), os.X_OK)  # the unpacking dropped the exec bit, as Kodi's may
        kodi.start()
        line = kodi.wait_log("[service.ipcbus] started the bus (PID")
        assert "%s serve --host 127.0.0.1 --port %d" % (bundled, PORT) in line, line
        kodi.wait_log("[service.ipcbus] connected to %s" % URL)
        kodi.wait_log("[service.ipcbus] self-test passed")
        token = (kodi.profile / "token").read_text().strip()
        with ipcbus.Bus(URL, token=token, reconnect=False) as bus:
            assert bus.get("kodi.player.state")["state"] == "stopped"
            kodi.rpc.call("Player.Open", {"item": {"file": clip}})
            item = harness.wait_until(lambda: bus.get("kodi.player.item", None), harness.WAIT, "kodi.player.item")
            assert item["file"].endswith("ipcbus-clip.mp4"), item
            harness.wait_until(lambda: bus.get("kodi.player.state")["state"] == "playing", harness.WAIT,
                               "kodi.player.state playing")
        with pytest.raises(ipcbus.Unauthorized):
            ipcbus.Bus(URL, token="not-the-token-of-this-bus", reconnect=False)
        pid = int(line.split("PID ", 1)[1].split(")", 1)[0])
        since = kodi.log_size()
        kodi.stop()
        assert "[service.ipcbus] stopped the bus (PID %d" % pid in kodi.log()[since:], kodi.log_excerpt()
        assert harness.process_gone(pid)
    finally:
        kodi.remove()


def test_a_bus_that_already_answers_is_used(port_free):
    kodi = harness.Kodi(None, zips=zips())
    # A per-user bus (the systemd user unit's) with its token where the
    # client looks for it: $HOME/.local/share/ipcbus.
    data = kodi.home / ".local" / "share" / "ipcbus"
    server = subprocess.Popen([harness.binary(), "serve", "--port", str(PORT), "--no-selftest", "--data-dir", str(data)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=harness.clean_env())
    try:
        harness.wait_until(lambda: (data / "token").exists() and listening(), harness.WAIT, "the other bus")
        kodi.start()
        kodi.wait_log("[service.ipcbus] a bus (ipcbus/%s) already answers on port %d: using it, starting none"
                      % (VERSION, PORT))
        kodi.wait_log("[service.ipcbus] connected to %s" % URL)
        with ipcbus.Bus(URL, token=(data / "token").read_text().strip(), reconnect=False) as bus:
            assert harness.wait_until(lambda: bus.get("kodi.player.state", None), harness.WAIT, "kodi.player.state")
        assert "started the bus" not in kodi.log()
        kodi.stop()
        assert server.poll() is None  # not Kodi's to stop
    finally:
        kodi.remove()
        harness.stop_process(server, harness.WAIT)


def test_a_port_held_by_something_else_is_reported(port_free):
    web = harness.not_a_bus(PORT)
    kodi = harness.Kodi(None, zips=zips())
    try:
        kodi.start()
        line = kodi.wait_log("[service.ipcbus] could not start the bus")
        assert ("port %d on 127.0.0.1 is in use by something that is not an ipcbus bus (HTTP 404 from BaseHTTP"
                % PORT) in line, line
        assert "choose another port in the settings" in line
        assert "started the bus" not in kodi.log()
    finally:
        kodi.remove()
        web.shutdown()
        web.server_close()


def test_the_repository_is_laid_out_as_kodi_reads_it():
    """addons.xml lists every addon with the version of its zip, which is at
    <id>/<id>-<version>.zip (a datadir with zip="true"); addons.xml.md5 is
    its MD5; repository.ipcbus points at the URL given to dist.sh."""
    import hashlib
    import xml.etree.ElementTree as ET
    import zipfile
    repo = artifact("kodi-repo")
    data = (repo / "addons.xml").read_bytes()
    assert (repo / "addons.xml.md5").read_text().strip() == hashlib.md5(data).hexdigest()
    addons = {a.get("id"): a for a in ET.fromstring(data).findall("addon")}
    assert set(addons) == {"script.module.ipcbus", "service.ipcbus", "repository.ipcbus"}
    for addon_id, addon in addons.items():
        archive = repo / addon_id / ("%s-%s.zip" % (addon_id, addon.get("version")))
        with zipfile.ZipFile(str(archive)) as z:
            inner = ET.fromstring(z.read("%s/addon.xml" % addon_id))
        assert (inner.get("id"), inner.get("version")) == (addon_id, addon.get("version"))
    service = addons["service.ipcbus"]
    assert service.find("extension[@point='xbmc.addon.metadata']/platform").text == "all"
    requires = {i.get("addon") for i in addons["script.module.ipcbus"].find("requires")}
    assert "script.module.websocket" in requires  # from Kodi's own repository
    info = addons["repository.ipcbus"].find("extension[@point='xbmc.addon.repository']/dir")
    base = info.find("datadir").text
    assert info.find("datadir").get("zip") == "true" and base.endswith("/")
    assert info.find("info").text == base + "addons.xml"
    assert info.find("checksum").text == base + "addons.xml.md5"
    # The same repository addon is offered for "Install from zip file".
    assert (artifact("kodi") / ("repository.ipcbus-%s.zip" % VERSION)).exists()
    with zipfile.ZipFile(str(artifact("kodi/service.ipcbus-%s.zip" % VERSION))) as z:
        modes = {i.filename: i.external_attr >> 16 for i in z.infolist()}
    for platform, exe in (("linux-x86_64", "ipcbus"), ("linux-aarch64", "ipcbus"), ("linux-armv7", "ipcbus"),
                          ("windows-x86_64", "ipcbus.exe")):
        assert modes["service.ipcbus/bin/%s/%s" % (platform, exe)] == 0o100755


def test_kodi_reads_the_repository_and_offers_the_addons():
    """The repository as Kodi reads it: the release zips served over HTTP
    with a repository.ipcbus pointing there (made by the same code as
    dist.sh's, clients/kodi/pack.py), installed into a fresh Kodi. Kodi
    fetches addons.xml.md5 and addons.xml, and lists both addons as
    available to install."""
    sys.path.insert(0, str(REPO / "clients" / "kodi"))
    import pack
    folder = tempfile.mkdtemp(prefix="kodi-repo-")
    fetched = []

    class Logged(http.server.SimpleHTTPRequestHandler):
        def log_message(self, fmt, *args):
            fetched.append(self.path)
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Logged, directory=folder + "/repo"))
    threading.Thread(target=web.serve_forever, daemon=True).start()
    entries = []
    for archive in zips():
        addon_id = os.path.basename(archive).rsplit("-", 1)[0]
        with zipfile.ZipFile(archive) as z:
            entries.append((archive, z.read(addon_id + "/addon.xml").decode("utf-8")))
    entries.append(pack.repository_addon(folder, "http://127.0.0.1:%d/" % web.server_address[1], VERSION))
    pack.write_repo(folder + "/repo", entries)
    kodi = harness.Kodi(None, zips=[entries[-1][0]])
    try:
        kodi.start()
        harness.wait_until(lambda: "/addons.xml" in fetched, harness.WAIT, "Kodi to fetch addons.xml")
        assert fetched.index("/addons.xml.md5") < fetched.index("/addons.xml")

        def offered():
            found = kodi.rpc.call("Addons.GetAddons", {"installed": False, "properties": ["version"]})
            return {a["addonid"]: a["version"] for a in found.get("addons", [])}
        assert harness.wait_until(lambda: offered().get("service.ipcbus"), harness.WAIT, "service.ipcbus offered")
        assert offered() == {"script.module.ipcbus": VERSION, "service.ipcbus": VERSION}
    finally:
        kodi.remove()
        web.shutdown()
        web.server_close()
        shutil.rmtree(folder, ignore_errors=True)
