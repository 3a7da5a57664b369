"""ipcbus.compat, the old IPCClientX API, against the real server: the old
datastore's own client tests and data, its three scenarios, the key
escaping, every error path, and an old-style addon run as a process."""

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import unicodedata

import pytest

import ipcbus
import ipcbus.codec
import ipcbus.compat as ipcclientxerrors
from conftest import WAIT, free_port
from ipcbus.compat import Data, IPCClientX, keys

#: The old datastore's client test data (service.ipcdatastore, tests.py,
#: TestIPCClient.senddata), under the author its tests used.
OLD_DATA = {"int": 5, "float": 1.314, "str": "abcdef", "tuple": (7, "hello"), "list": [0, 8.1, "goodbye"],
            "dict": {"name": "Ned Stark", "deceased": True}}
OLD_AUTHOR = "tests.ipcdatastore"
ADDON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compat_addon")


@pytest.fixture(params=["msgpack", "json"])
def codec(request, monkeypatch):
    if request.param == "json":
        monkeypatch.setattr(ipcbus.codec, "msgpack", None)  # as inside Kodi, which has no msgpack
    return {"msgpack": ipcbus.MSGPACK, "json": ipcbus.JSON}[request.param]


@pytest.fixture
def make(server, codec, monkeypatch):
    """Makes IPCClientX instances (one per addon) on the test's server."""
    monkeypatch.setenv("IPCBUS_URL", server.url)
    made = []

    def new():
        made.append(IPCClientX())
        return made[-1]

    yield new
    for client in made:
        client.close()


@pytest.fixture
def client(make):
    c = make()
    for name, value in OLD_DATA.items():
        assert c.set(name, value, author=OLD_AUTHOR) is True
    return c


def wait_for(client, name, author, want):
    """Reads ``name`` as an old addon's loop would, but waits for the push
    between reads (on the Watch that serves the client's reads) instead of
    sleeping; returns the Data once ``want(data)``."""
    key = keys.key_for(author, name)
    while True:
        held = client._cache._watches.get(key)
        version = held[0].version if held else 0
        data = client.get(name, author=author, requestor="waiter", return_tuple=True)
        if want(data):
            return data
        held = client._cache._watches.get(key)
        if held is None:
            pytest.fail("%s is not cached" % key)
        held[0].wait_changed(version, WAIT)


# -- the old datastore's client tests (tests.py, TestIPCClient) ---------------


def test_old_data_comes_back_as_stored(client, codec):
    assert client._connected().codec == codec
    for name, value in OLD_DATA.items():
        got = client.get(name, author=OLD_AUTHOR, requestor="tests")
        assert got == value and type(got) is type(value), name
    assert type(client.get("tuple", author=OLD_AUTHOR)) is tuple


def test_ts_is_the_float_time_of_the_write_for_every_reader(client, make):
    other = make()
    for name in OLD_DATA:
        mine = client.get(name, author=OLD_AUTHOR, requestor="tests", return_tuple=True)
        theirs = other.get(name, author=OLD_AUTHOR, requestor="tests", return_tuple=True)
        assert isinstance(mine.ts, float) and mine.ts == theirs.ts, name
    before = other.get("int", author=OLD_AUTHOR, return_tuple=True).ts
    client.set("int", 6, author=OLD_AUTHOR)
    assert wait_for(other, "int", OLD_AUTHOR, lambda d: d.value == 6).ts > before


def test_get_data_list(client):
    listing = client.get_data_list()
    assert sorted(listing[OLD_AUTHOR]) == sorted(OLD_DATA)
    assert client.get_data_list(OLD_AUTHOR) == {OLD_AUTHOR: sorted(OLD_DATA)}
    assert client.get_data_list("nobody") == {}


def test_delete_returns_the_value(client):
    assert client.delete("tuple", author=OLD_AUTHOR) == (7, "hello")
    assert client.get("tuple") is None  # the old test read it under the default author
    assert client.get("tuple", author=OLD_AUTHOR) is None
    gone = client.delete("list", author=OLD_AUTHOR, return_tuple=True)
    assert gone.value == [0, 8.1, "goodbye"] and isinstance(gone.ts, float) and gone.cached is False


def test_cache(client):
    assert client.get("str", author=OLD_AUTHOR, requestor="tests", return_tuple=True).cached is False
    assert client.get("str", author=OLD_AUTHOR, requestor="tests", return_tuple=True).cached is True
    # Per requestor, as the old server tracked it.
    assert client.get("str", author=OLD_AUTHOR, requestor="other", return_tuple=True).cached is False


def test_clearcache(client):
    assert client.get("int", author=OLD_AUTHOR, requestor="tests", return_tuple=True).cached is False
    assert client.clearcache() is True
    assert client.get("int", author=OLD_AUTHOR, requestor="tests", return_tuple=True).cached is False


def test_a_cached_read_makes_no_round_trip(client, server):
    assert client.get("dict", author=OLD_AUTHOR, requestor="tests") == OLD_DATA["dict"]
    server.proc.send_signal(signal.SIGSTOP)  # the connection stays up; nothing is answered
    try:
        for _ in range(100):
            got = client.get("dict", author=OLD_AUTHOR, requestor="tests", return_tuple=True)
            assert got == Data(OLD_DATA["dict"], got.ts, True)
    finally:
        server.proc.send_signal(signal.SIGCONT)


def test_a_change_by_another_addon_is_pushed_into_the_cache(client, make):
    other = make()
    assert client.get("str", author=OLD_AUTHOR, requestor="r", return_tuple=True).cached is False
    other.set("str", "changed", author=OLD_AUTHOR)
    got = wait_for(client, "str", OLD_AUTHOR, lambda d: d.value == "changed")
    assert client.get("str", author=OLD_AUTHOR, requestor="r", return_tuple=True) == Data("changed", got.ts, False)
    other.delete("str", author=OLD_AUTHOR)
    assert wait_for(client, "str", OLD_AUTHOR, lambda d: d.value is None) == Data(None, None, False)


def test_own_write_is_read_back_at_once(client):
    for n in range(20):
        client.set("int", n, author=OLD_AUTHOR)
        assert client.get("int", author=OLD_AUTHOR) == n


def test_clearall(client, server):
    with ipcbus.Bus(server.url) as bus:
        bus.set("other.data", 1)
        client.clearall()
        assert client.get_data_list() == {}
        assert bus.get("other.data") == 1  # only the old API's values


def test_save_restore(client):
    client.set("persist", 2.5, author=OLD_AUTHOR, persist=True)
    ts = client.get("persist", author=OLD_AUTHOR, return_tuple=True).ts
    assert client.savedata(OLD_AUTHOR) is True
    client.clearall()
    client.set("later", 1, author=OLD_AUTHOR)
    assert client.restoredata(OLD_AUTHOR) is True
    assert sorted(client.get_data_list()[OLD_AUTHOR]) == sorted(list(OLD_DATA) + ["persist", "later"])
    assert client.get("tuple", author=OLD_AUTHOR) == (7, "hello")
    assert client.get("persist", author=OLD_AUTHOR, return_tuple=True).ts == ts
    assert client.delete_data(OLD_AUTHOR) is True
    assert client.restoredata(OLD_AUTHOR) is False


def test_unserializable_error(client):
    client.raise_exception = True
    with pytest.raises(ipcclientxerrors.ObjectNotSerializableError) as e:
        client.set(OLD_AUTHOR, client.get)
    assert isinstance(e.value, TypeError) and "method" in str(e.value)
    assert client.get("int", author=OLD_AUTHOR) == 5  # the connection is fine
    client.raise_exception = False
    assert client.set("when", {1, 2}) is False


def test_valuenotfound_error(client):
    client.raise_exception = True
    with pytest.raises(ipcclientxerrors.VarNotFoundError) as e:
        client.get("garbage")
    assert str(e.value) == "Variable not found on server for author=service.ipcdatastore, var_name=garbage"
    assert e.value.errno == ipcclientxerrors.IPCERROR_NO_VALUE_FOUND


def test_serverunavailable_error(client):
    client.raise_exception = True
    client.num_of_server_retries = 1  # as the old test: give up at once
    client.uri = "PYRO:kodi-IGA@localhost:%d" % free_port()
    assert client.server_available() is False
    with pytest.raises(ipcclientxerrors.ServerUnavailableError) as e:
        client.get("int", author=OLD_AUTHOR)
    assert client.uri in str(e.value) and "cannot connect" in str(e.value)
    assert isinstance(e.value, ipcclientxerrors.IPCClientError)


def test_a_refused_client_is_told_why(make, monkeypatch):
    monkeypatch.setenv("IPCBUS_TOKEN", "not-the-token")
    client = make()
    assert client.set("x", 1) is False
    client.raise_exception = True
    with pytest.raises(ipcclientxerrors.ServerUnavailableError) as e:
        client.get("x")
    assert "401" in str(e.value) and "IPCBUS_TOKEN" in str(e.value)


def test_dropping_the_client_closes_its_connection(server, monkeypatch):
    monkeypatch.setenv("IPCBUS_URL", server.url)
    client = IPCClientX()  # as old addons did: made for a call, then `del client`
    assert client.get("x") is None
    bus = client._bus
    assert bus.state == "open"
    del client
    assert bus.state == "closed"


def test_persistence_across_a_restart(client, server):
    client.set("persist", 3.14159, author=OLD_AUTHOR, persist=True)
    client.set("added", "a", author=OLD_AUTHOR)
    assert client.add_persistence("added", author=OLD_AUTHOR) is True
    assert client.add_persistence("str", author=OLD_AUTHOR) is True
    assert client.remove_persistence("str", author=OLD_AUTHOR) is True
    server.stop()
    server.start()
    assert client.get("persist", author=OLD_AUTHOR, requestor="tests") == 3.14159
    assert client.get("added", author=OLD_AUTHOR) == "a"
    assert client.get("str", author=OLD_AUTHOR) is None
    assert sorted(client.get_data_list()[OLD_AUTHOR]) == ["added", "persist"]
    assert client.remove_persistence("persist", author=OLD_AUTHOR) is True
    server.stop()
    server.start()
    assert client.get_data_list()[OLD_AUTHOR] == ["added"]


# -- the old datastore's three scenarios (docs/background.rst), two addons ---


def test_a_service_feeds_a_plugin_started_later(make):
    service = make()
    service.set("today", {"city": "Oslo", "temp": -2.5}, author="service.weather")
    plugin = make()
    first = plugin.get("today", author="service.weather", requestor="plugin.weather", return_tuple=True)
    assert first.value == {"city": "Oslo", "temp": -2.5} and first.cached is False
    again = plugin.get("today", author="service.weather", requestor="plugin.weather", return_tuple=True)
    assert again == Data(first.value, first.ts, True)
    service.set("today", {"city": "Oslo", "temp": -2.0}, author="service.weather")
    newer = wait_for(plugin, "today", "service.weather", lambda d: d.value["temp"] == -2.0)
    assert newer.ts > first.ts


def test_a_hotkey_script_asks_the_service_for_a_refresh(make):
    service, hotkey = make(), make()
    handled = queue.Queue()
    stop = threading.Event()

    def service_loop():  # as the old services did: read, then pause (xbmc.sleep)
        scrapes = 0
        while not stop.is_set():
            request = service.get("refresh", author="service.weather", requestor="service.weather",
                                  return_tuple=True)
            if request.value is not None and not request.cached:
                scrapes += 1
                service.set("today", {"scrape": scrapes}, author="service.weather")
                handled.put(request.value)
            stop.wait(0.02)

    loop = threading.Thread(target=service_loop, daemon=True)
    loop.start()
    try:
        hotkey.set("refresh", "now", author="service.weather")
        assert handled.get(timeout=WAIT) == "now"
        hotkey.set("refresh", "again", author="service.weather")
        assert handled.get(timeout=WAIT) == "again"
    finally:
        stop.set()
        loop.join(WAIT)
    assert hotkey.get("today", author="service.weather") == {"scrape": 2}


def test_a_slow_result_is_gathered_once_and_shared(make):
    gathered = []

    def forecast(client):
        days = client.get("forecast", author="shared")
        if days is None:
            gathered.append(client)
            days = ["sun", "rain", "sun"]  # the slow, I/O-bound part
            client.set("forecast", days, author="shared")
        return days

    readers = [make() for _ in range(3)]
    assert [forecast(c) for c in readers] == [["sun", "rain", "sun"]] * 3
    assert gathered == readers[:1]


# -- keys: every old name and author stays usable -----------------------------

AWKWARD = ["", ".", "..", "a.b", "x y", " ", "*", ">", "a.*", "a.>", "%", "%41", "%2E", "ü.日本", "tab\there",
           "line\nbreak", "\x00", "\x7f\x85", "\u00a0\u2003\u3000", "\u200b", "emoji 🎬", "\ud800", "~@:/-_"]


def test_awkward_names_and_authors_round_trip(make):
    client = make()
    client.raise_exception = True
    for i, text in enumerate(AWKWARD):
        client.set(text, i, author=text)
        client.set("n", [i], author=text)
    client.set(5, "a number", author=7)  # the old server took str() of both
    listing = client.get_data_list()
    for i, text in enumerate(AWKWARD):
        assert client.get(text, author=text) == i
        assert sorted(listing[text]) == sorted({text, "n"})
        only = client.get_data_list(text)
        assert list(only) == [text] and sorted(only[text]) == sorted({text, "n"})
    assert client.get("5", author="7") == "a number"


def random_text(rng):
    alphabet = ".%*> \t\n\x00\x7f\x85\u00a0\u2028\u3000\ud800aZ9~-_:ü日🎬"
    return "".join(rng.choice(alphabet) if rng.random() < 0.7 else chr(rng.randrange(0x20, 0x3000))
                   for _ in range(rng.randrange(0, 12)))


def test_escaping_is_reversible_and_one_to_one():
    rng = random.Random(14)
    seen = {}
    for _ in range(5000):
        text = random_text(rng)
        token = keys.escape(text)
        assert keys.unescape(token) == text
        assert seen.setdefault(token, text) == text
        assert token and not set(token) & set(".*>")
        assert not any(unicodedata.category(c) == "Cc" or c.isspace() for c in token)
    for bad in ["%", "%4", "%zz", "%41", "%2e", "a.b"]:
        if bad != keys.EMPTY:
            with pytest.raises(ValueError):
                keys.unescape(bad)


def test_random_names_round_trip_through_the_server(make):
    rng = random.Random(9)
    writer, reader = make(), make()
    writer.raise_exception = True
    stored = {}
    for i in range(150):
        author, name = random_text(rng), random_text(rng)
        writer.set(name, i, author=author)
        stored[(author, name)] = i
    listing = reader.get_data_list()
    assert sorted((a, n) for a, names in listing.items() for n in names) == sorted(stored)
    for (author, name), value in stored.items():
        assert reader.get(name, author=author) == value


# -- every error path, with raise_exception and without -----------------------


def test_names_too_long_for_a_key(client):
    assert client.set("n" * 300, 1) is False
    client.raise_exception = True
    with pytest.raises(ipcclientxerrors.NameTooLongError) as e:
        client.get("x" * 200, author="a" * 60)
    assert isinstance(e.value, ValueError) and "256" in str(e.value)
    assert client.set("x" * 200, 1, author="a" * 50) is True  # "ipcx." + 50 + "." + 200: 256 bytes
    with pytest.raises(ipcclientxerrors.NameTooLongError):
        client.set("x" * 200, 1, author="a" * 51)
    with pytest.raises(ipcclientxerrors.NameTooLongError):
        client.set("ü" * 101, 1, author="a" * 50)  # 101 characters, but 202 bytes
    assert client.get_data_list("a" * 300) == {}


def test_value_too_large(client):
    assert client.set("big", "x" * (2 << 20)) is False
    client.raise_exception = True
    with pytest.raises(ipcclientxerrors.ObjectTooLargeError):
        client.set("big", "x" * (2 << 20))
    assert client.get("int", author=OLD_AUTHOR) == 5


def test_failures_without_raise_exception(client):
    assert client.get("garbage") is None
    assert client.get("garbage", return_tuple=True) == Data(None, None, False)
    assert client.delete("garbage") is None
    assert client.delete("garbage", return_tuple=True) == Data(None, None, False)
    assert client.add_persistence("garbage") is False
    assert client.restoredata("nobody") is False
    assert client.delete_data("nobody") is False


@pytest.mark.parametrize("call, error", [
    (lambda c: c.delete("garbage"), ipcclientxerrors.VarNotFoundError),
    (lambda c: c.add_persistence("garbage"), ipcclientxerrors.VarNotFoundError),
    (lambda c: c.remove_persistence("garbage"), ipcclientxerrors.VarNotFoundError),
    (lambda c: c.restoredata("nobody"), ipcclientxerrors.RestoreFailedError),
    (lambda c: c.delete_data("nobody"), ipcclientxerrors.UnknownError),
])
def test_errors_raised(client, call, error):
    client.raise_exception = True
    with pytest.raises(error) as e:
        call(client)
    assert e.value.errno == error.errno and str(e.value)


def test_no_exposed_object(client):
    with pytest.raises(NotImplementedError):
        client.get_exposed_object()


# -- an old addon, run with its import changed --------------------------------


def test_an_old_style_addon_runs_with_its_import_changed(make, server):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(ipcbus.__file__)))
    run = subprocess.run([sys.executable, os.path.join(ADDON, "default.py")], env=env, cwd=ADDON,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[1:] == [
        "x = 20",
        "1920x1080 @ 23.976 cached=False",
        "again cached=True",
        "pair = (7, 'hello')",
        "names = ['pair', 'x']",
        "Variable not found on server for author=script.oldstyle.addon, var_name=garbage",
        "error = VarNotFoundError",
    ]
    # Its default author is its addon id, as in the old client; x is persisted.
    with ipcbus.Bus(server.url) as bus:
        assert bus.get("ipcx.script%2Eoldstyle%2Eaddon.x")["v"] == 20
    server.stop()
    server.start()
    assert make().get("x", author="script.oldstyle.addon") == 20
