"""The access token and the Origin check, against the real server: every way
the client finds its token, and what a refusal raises."""

import logging
import os
import shutil
import threading

import pytest
import websocket

import ipcbus
from conftest import WAIT
from ipcbus import _auth


def works(url, **kwargs):
    with ipcbus.Bus(url, **kwargs) as bus:
        return bus.set("auth.ok", True) > 0


def test_discovered_from_the_data_dir(server):
    # The fixture set only $IPCBUS_DATA_DIR, as a zero-config client sees it.
    assert _auth.credentials(None, server.url) == (
        server.token, "the token in the token file %s" % server.token_file, server.token_file)
    assert works(server.url)


def test_discovered_from_the_platform_data_dir(server, monkeypatch, tmp_path):
    monkeypatch.delenv("IPCBUS_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    (tmp_path / "xdg" / "ipcbus").mkdir(parents=True)
    shutil.copy(server.token_file, str(tmp_path / "xdg" / "ipcbus" / "token"))
    assert works(server.url)
    # Without $XDG_DATA_HOME (a relative one is ignored, as in Rust): ~/.local/share.
    monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".local" / "share" / "ipcbus").mkdir(parents=True)
    shutil.copy(server.token_file, str(tmp_path / ".local" / "share" / "ipcbus" / "token"))
    assert works(server.url)


def test_platform_data_dirs(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("APPDATA", str(tmp_path / "Roaming"))
    assert _auth.platform_data_dir("darwin") == os.path.join(str(tmp_path), "Library", "Application Support")
    assert _auth.platform_data_dir("win32") == str(tmp_path / "Roaming")
    monkeypatch.setenv("XDG_DATA_HOME", "/xdg")
    assert _auth.platform_data_dir("linux") == "/xdg"


def test_token_from_environment(server, monkeypatch):
    monkeypatch.delenv("IPCBUS_DATA_DIR")
    monkeypatch.setenv("IPCBUS_TOKEN", " %s \n" % server.token)
    assert works(server.url)


def test_token_file_from_environment(server, monkeypatch, tmp_path):
    monkeypatch.delenv("IPCBUS_DATA_DIR")
    (tmp_path / "t").write_text(server.token + "\nsecond line ignored\n")
    monkeypatch.setenv("IPCBUS_TOKEN_FILE", str(tmp_path / "t"))
    assert works(server.url)


def test_explicit_token_wins_and_url_token_needs_no_lookup(server, monkeypatch):
    monkeypatch.setenv("IPCBUS_TOKEN", "wrong")
    assert works(server.url, token=server.token)
    url = server.url + "?token=" + server.token
    assert _auth.credentials(None, url)[0] is None  # no header, no lookup
    assert works(url)


def test_wrong_token_is_unauthorized(server, monkeypatch):
    with pytest.raises(ipcbus.Unauthorized, match="token given to Bus"):
        ipcbus.Bus(server.url, token="wrong")
    with open(server.token_file, "w") as f:  # the server read it at start
        f.write("stale\n")
    with pytest.raises(ipcbus.Unauthorized, match="token file") as e:
        ipcbus.Bus(server.url)
    assert e.value.token_file == server.token_file
    assert isinstance(e.value, ipcbus.IpcbusError)
    monkeypatch.setenv("IPCBUS_TOKEN", "wrong")
    with pytest.raises(ipcbus.Unauthorized, match=r"\$IPCBUS_TOKEN"):
        ipcbus.Bus(server.url)


def test_no_token_is_unauthorized_and_says_where_it_looked(server, monkeypatch, tmp_path):
    monkeypatch.setenv("IPCBUS_DATA_DIR", str(tmp_path))
    with pytest.raises(ipcbus.Unauthorized) as e:
        ipcbus.Bus(server.url)
    assert e.value.token_file == str(tmp_path / "token")
    assert str(tmp_path / "token") in str(e.value) and "none was found" in str(e.value)


def test_origin_of_another_site_is_forbidden(server, monkeypatch):
    connect = websocket.create_connection

    def from_a_web_page(url, **options):
        return connect(url, **dict(options, origin="http://evil.example", suppress_origin=False))

    monkeypatch.setattr(websocket, "create_connection", from_a_web_page)
    with pytest.raises(ipcbus.Forbidden, match="evil.example"):
        ipcbus.Bus(server.url)


def test_no_origin_is_sent_so_a_host_name_works(server, monkeypatch):
    # websocket-client would send Origin http://127.0.0.1:port, which does not
    # match this Host header; the server lets no Origin through.
    connect = websocket.create_connection

    def by_name(url, **options):
        return connect(url, **dict(options, host="ipcbus-box:%d" % server.port))

    monkeypatch.setattr(websocket, "create_connection", by_name)
    assert works(server.url)


class Seen(logging.Handler):
    """Sets `event` when a log record contains `text`."""

    def __init__(self, text):
        super().__init__()
        self.text = text
        self.event = threading.Event()

    def emit(self, record):
        if self.text in record.getMessage():
            self.event.set()


def test_reconnect_retries_a_refused_token_and_rereads_it(server, monkeypatch, tmp_path):
    client_copy = tmp_path / "token"
    client_copy.write_text(server.token)
    monkeypatch.setenv("IPCBUS_TOKEN_FILE", str(client_copy))
    refused = Seen("401")
    logging.getLogger("ipcbus").addHandler(refused)
    events = []
    back = threading.Event()
    try:
        with ipcbus.Bus(server.url, timeout=WAIT) as bus:
            bus.subscribe("rot.key", lambda ev: (events.append(ev.kind), ev.value == "back" and back.set()))
            client_copy.write_text("rotated-away")
            server.stop()
            server.start()
            assert refused.event.wait(WAIT), "no 401 was logged"
            assert bus._reader.is_alive()
            client_copy.write_text(server.token)
            with ipcbus.Bus(server.url, token=server.token) as writer:
                writer.set("rot.key", "back")
            assert back.wait(WAIT), events
    finally:
        logging.getLogger("ipcbus").removeHandler(refused)
