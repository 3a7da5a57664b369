"""A plugin's cold start (docs/benchmarks.md, "Issue 17: Python cold start"):
Kodi runs a plugin as a fresh Python process each time a folder opens, so
the client imports only what connecting and one read need, and the rest
when first used. Checked in a fresh interpreter by what is in
``sys.modules``, never by timing."""

import logging
import os
import subprocess
import sys
import threading

import pytest

import ipcbus

#: What ``import ipcbus`` leaves out, each imported when first needed:
#: websocket-client (and with it http.client, email, ssl) at the first
#: connect, logging when something is logged, copy for an ephemeral set,
#: json for the JSON codec, urllib.parse for the token lookup (both bring
#: re); typing never.
NOT_AT_IMPORT = ("websocket", "http.client", "email", "ssl", "logging", "typing", "copy", "json", "urllib.parse", "re")
#: What a connect and a read add to what websocket-client already imported.
NOT_FOR_A_READ = ("typing", "copy", "ipcbus.compat")


def run(code, *args):
    """Runs ``code`` in a fresh interpreter with this ipcbus, returns its stdout."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(ipcbus.__file__)))
    out = subprocess.run([sys.executable, "-c", code] + list(args), env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize("module, left_out", [
    ("ipcbus", NOT_AT_IMPORT),
    # The old datastore's API, for addons that moved over: the same plugins.
    ("ipcbus.compat", ("websocket", "http.client", "ssl", "logging", "typing", "json")),
])
def test_import_leaves_out_what_a_first_call_does_not_need(module, left_out):
    # Against the modules the interpreter had before: site may import some.
    loaded = run(
        "import importlib, sys\n"
        "before = set(sys.modules)\n"
        "importlib.import_module(sys.argv[1])\n"
        "print(' '.join(sorted(m for m in set(sys.modules) - before\n"
        "                      if m in sys.argv[2:] or m.split('.')[0] in sys.argv[2:])))\n",
        module, *left_out
    )
    assert loaded == "", "import %s imported %s" % (module, loaded)


def test_a_connect_and_a_read_add_only_what_they_need(server):
    # As a plugin in Kodi: JSON (no msgpack), one get, no callback thread.
    seen = run(
        "import sys; sys.modules['msgpack'] = None\n"
        "import threading, websocket\n"
        "before = set(sys.modules)\n"
        "import ipcbus\n"
        "with ipcbus.Bus(sys.argv[1]) as bus:\n"
        "    bus.set('cold.k', [1])\n"
        "    assert bus.get('cold.k') == [1]\n"
        "    threads = sorted(t.name for t in threading.enumerate())\n"
        "print(' '.join(sorted(m for m in set(sys.modules) - before if m in sys.argv[2:])), '|', ' '.join(threads))\n",
        server.url, *NOT_FOR_A_READ
    )
    added, threads = seen.split("|")
    assert added.strip() == "", "a connect and a get imported %s" % added
    assert threads.split() == ["MainThread", "ipcbus-reader"], threads


def callback_threads():
    return [t for t in threading.enumerate() if t.name == "ipcbus-callbacks"]


def test_the_callback_thread_starts_with_the_first_event(server):
    before = len(callback_threads())
    with ipcbus.Bus(server.url) as bus:
        assert bus.get("cold.none", None) is None
        assert len(callback_threads()) == before
        synced = threading.Event()
        bus.subscribe("cold.>", lambda ev: ev.kind == "synced" and synced.set())
        assert synced.wait(10)
        assert len(callback_threads()) == before + 1
    assert len(callback_threads()) == before  # close() ended it


def test_debug_records_still_reach_a_configured_logger(server, caplog):
    # logging is imported (by this test), so debug records are passed on,
    # with the caller's place, not the lazy logger's.
    with caplog.at_level(logging.DEBUG, logger="ipcbus"):
        with ipcbus.Bus(server.url):
            pass
    opened = [r for r in caplog.records if r.getMessage().startswith("ipcbus: open")]
    assert opened, [r.getMessage() for r in caplog.records]
    assert opened[0].name == "ipcbus" and opened[0].levelno == logging.DEBUG
    assert opened[0].module == "state" and opened[0].funcName == "set", (opened[0].module, opened[0].funcName)
