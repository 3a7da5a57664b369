"""The Python examples (examples/python), run as real processes against a
real server: the three scenarios of the old datastore."""

import os
import queue
import subprocess
import sys
import threading

import ipcbus
from conftest import REPO, WAIT, Server, free_port

EXAMPLES = REPO / "examples" / "python"


def spawn(name, server, **env):
    # The package the suite tests: the source folder, or the installed one.
    env = dict(os.environ, IPCBUS_URL=server.url, PYTHONPATH=os.path.dirname(os.path.dirname(ipcbus.__file__)),
               **env)
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / name)], stdout=subprocess.PIPE, text=True, env=env)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l.rstrip("\n")) for l in proc.stdout], daemon=True).start()
    return proc, lines


def test_publisher_plugin_hotkey(server):
    publisher, published = spawn("publisher.py", server, SCRAPES="2")
    assert published.get(timeout=WAIT) == "published scrape 1 as rev 2"  # rev 1: svc.weather.online
    plugin, shown = spawn("plugin.py", server, UPDATES="1")
    assert shown.get(timeout=WAIT) == "Oslo: -2.5 °C (scrape 1)"  # at once, by replay
    hotkey, _ = spawn("hotkey.py", server)
    assert hotkey.wait(timeout=WAIT) == 0
    assert published.get(timeout=WAIT) == "published scrape 2 as rev 4"  # pushed, not polled
    assert shown.get(timeout=WAIT) == "Oslo: -2.0 °C (scrape 2)"
    assert plugin.wait(timeout=WAIT) == 0
    assert publisher.wait(timeout=WAIT) == 0


def test_shared_result_is_gathered_once(server):
    runs = [spawn("shared_result.py", server) for _ in range(4)]
    roles = []
    for proc, out in runs:
        role, days = out.get(timeout=WAIT).split(" ", 1)
        assert days == "['sun', 'rain', 'sun']"
        assert proc.wait(timeout=WAIT) == 0
        roles.append(role)
    assert sorted(roles) == ["gathered", "shared", "shared", "shared"]


def test_the_scenario_rides_out_a_bus_restart(monkeypatch):
    server = Server(free_port()).start()
    monkeypatch.setenv("IPCBUS_DATA_DIR", server.data_dir)
    try:
        publisher, published = spawn("publisher.py", server, SCRAPES="2")
        assert published.get(timeout=WAIT) == "published scrape 1 as rev 2"
        plugin, shown = spawn("plugin.py", server, UPDATES="2")
        assert shown.get(timeout=WAIT) == "Oslo: -2.5 °C (scrape 1)"
        server.stop()  # nothing was persisted: the weather is gone with it
        server.start()
        assert shown.get(timeout=WAIT) == "no weather yet"  # the plugin's mirror resynced
        hotkey, _ = spawn("hotkey.py", server)
        assert hotkey.wait(timeout=WAIT) == 0
        # The publisher's subscription resumed: the push reaches it.
        line = published.get(timeout=WAIT)
        while line.startswith("publishing svc.weather.today again"):
            line = published.get(timeout=WAIT)
        assert line.startswith("published scrape 2 as rev "), line
        assert shown.get(timeout=WAIT) == "Oslo: -2.0 °C (scrape 2)"
        assert plugin.wait(timeout=WAIT) == 0
        assert publisher.wait(timeout=WAIT) == 0
    finally:
        server.remove()
