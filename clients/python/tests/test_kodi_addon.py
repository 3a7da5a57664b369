"""The Kodi library addon: its addon.xml, and its packed zip working as Kodi
would load it (only the addon's lib folder on the path, no msgpack)."""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile

from conftest import REPO

KODI = REPO / "clients" / "kodi"


def test_addon_xml_declares_a_python_module():
    root = ET.parse(str(KODI / "script.module.ipcbus" / "addon.xml")).getroot()
    assert root.get("id") == "script.module.ipcbus"
    imports = {i.get("addon"): i.get("version") for i in root.iter("import")}
    assert imports["xbmc.python"] == "3.0.0"
    assert "script.module.websocket" in imports
    module = [e for e in root.iter("extension") if e.get("point") == "xbmc.python.module"]
    assert module and module[0].get("library") == "lib"


def test_packed_addon_imports_and_talks_json(server, tmp_path):
    built = subprocess.run(["bash", str(KODI / "build.sh")], capture_output=True, text=True, check=True)
    archive = [line for line in built.stdout.split() if "/script.module.ipcbus-" in line][0]
    with zipfile.ZipFile(archive) as z:
        z.extractall(str(tmp_path))
    lib = tmp_path / "script.module.ipcbus" / "lib"
    code = (
        "import sys; sys.modules['msgpack'] = None\n"
        "import ipcbus\n"
        "assert ipcbus.__file__.startswith(%r), ipcbus.__file__\n"
        "with ipcbus.Bus(%r) as bus:\n"
        "    assert bus.codec == ipcbus.JSON\n"
        "    bus.set('kodi.addon', {'ok': True})\n"
        "    assert bus.get('kodi.addon') == {'ok': True}\n"
        "print('ok')\n" % (str(lib), server.url)
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-I", "-c", "import sys; sys.path.insert(0, %r)\n" % str(lib) + code],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
