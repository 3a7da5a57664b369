"""`pip install ./clients/python` in a plain venv, and a script that uses the
bus: first without msgpack (the JSON fallback), then with it."""

import subprocess
import sys

from conftest import REPO

SCRIPT = """
import ipcbus
with ipcbus.Bus() as bus:
    bus.set("venv.check", {"n": [1, 2, 3]})
    assert bus.get("venv.check") == {"n": [1, 2, 3]}
    print(bus.codec)
"""


def run(args, **kw):
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_plain_venv_with_and_without_msgpack(server, tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(REPO / "clients" / "python")])
    env = {"IPCBUS_URL": server.url, "IPCBUS_DATA_DIR": server.data_dir, "PATH": str(venv / "bin")}
    assert run([py, "-c", SCRIPT], env=env).strip() == "ipcbus.v1.json"
    run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "msgpack"])
    assert run([py, "-c", SCRIPT], env=env).strip() == "ipcbus.v1.msgpack"
