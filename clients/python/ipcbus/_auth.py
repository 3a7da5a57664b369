"""Where the access token lives: the same lookup as the server and the Rust
client (``ipcbus_protocol::auth``), so that a client on the server's machine
needs no configuration.

- The data directory is ``$IPCBUS_DATA_DIR``, else the platform's data
  directory plus ``ipcbus``: ``$XDG_DATA_HOME/ipcbus`` or
  ``~/.local/share/ipcbus`` on Linux, ``~/Library/Application Support/ipcbus``
  on macOS, ``%APPDATA%\\ipcbus`` on Windows.
- The token file is ``$IPCBUS_TOKEN_FILE``, else ``<data dir>/token``.
- A client uses, in order: a token it is given, ``$IPCBUS_TOKEN``, the token
  file if it can read it, else no token.
- Inside Kodi (``xbmcvfs`` imports), when neither ``$IPCBUS_TOKEN_FILE``
  nor ``$IPCBUS_DATA_DIR`` is set, the token file of the bus that the
  ``service.ipcbus`` addon starts (in its profile folder) is tried before
  the platform default: an addon then needs no setting whichever way the
  bus runs. That addon removes the file when its bus stops or exits, so a
  stale one shadows the platform default only after a crash of Kodi, until
  the addon starts again.
"""

from __future__ import annotations

import os
import sys

from . import errors

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional, Tuple

DATA_DIR_ENV = "IPCBUS_DATA_DIR"
TOKEN_FILE_ENV = "IPCBUS_TOKEN_FILE"
TOKEN_ENV = "IPCBUS_TOKEN"
TOKEN_FILE_NAME = "token"
#: Where service.ipcbus's bus keeps its token, as a Kodi path.
KODI_TOKEN_FILE = "special://profile/addon_data/service.ipcbus/token"


def _home() -> Optional[str]:
    # As Rust's `dirs`: $HOME unless empty, else the password database.
    home = os.environ.get("HOME")
    if home:
        return home
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_dir or None
    except Exception:  # no pwd module (Windows), or no entry for this user
        return None


def platform_data_dir(platform: str = sys.platform) -> Optional[str]:
    """The platform's data directory (Rust ``dirs::data_dir()``), or None."""
    if platform == "win32":
        appdata = os.environ.get("APPDATA")
        if appdata:
            return appdata
        home = os.path.expanduser("~")
        return os.path.join(home, "AppData", "Roaming") if home != "~" else None
    home = _home()
    if platform == "darwin":
        return os.path.join(home, "Library", "Application Support") if home else None
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg and os.path.isabs(xdg):
        return xdg
    return os.path.join(home, ".local", "share") if home else None


def default_data_dir() -> Optional[str]:
    """``$IPCBUS_DATA_DIR``, else the platform data directory + ``ipcbus``."""
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return configured
    base = platform_data_dir()
    return os.path.join(base, "ipcbus") if base else None


def default_token_file() -> Optional[str]:
    """The token file a client reads by default."""
    configured = os.environ.get(TOKEN_FILE_ENV)
    if configured:
        return configured
    data_dir = default_data_dir()
    return os.path.join(data_dir, TOKEN_FILE_NAME) if data_dir else None


def kodi_token_file() -> Optional[str]:
    """service.ipcbus's token file when running inside Kodi, else None."""
    try:
        import xbmcvfs  # only inside Kodi
    except ImportError:
        return None
    try:
        return xbmcvfs.translatePath(KODI_TOKEN_FILE) or None
    except Exception:  # a Kodi too old for translatePath in xbmcvfs
        return None


def token_files() -> List[str]:
    """The token files a client tries, in order (see the module docs)."""
    explicit = os.environ.get(TOKEN_FILE_ENV) or os.environ.get(DATA_DIR_ENV)
    files = []
    if not explicit:
        kodi = kodi_token_file()
        if kodi:
            files.append(kodi)
    path = default_token_file()
    if path:
        files.append(path)
    return files


def read_token_file(path: str) -> Optional[str]:
    """The file's first line, trimmed; None if unreadable or empty."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            first = f.read().split("\n", 1)[0].strip()
    except (OSError, ValueError):  # ValueError: not UTF-8
        return None
    return first or None


def discover_token() -> Tuple[Optional[str], str, Optional[str]]:
    """``(token, where it came from, token file tried)`` for a client that
    was given no token. When none was found, the token is None and the
    second item says where the client looked."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token, "the token in $%s" % TOKEN_ENV, None
    paths = token_files()
    if not paths:
        return None, "$%s is unset and there is no data directory to look in" % TOKEN_ENV, None
    for path in paths:
        token = read_token_file(path)
        if token:
            return token, "the token in the token file %s" % path, path
    if len(paths) == 1:
        return None, "$%s is unset and the token file %s could not be read" % (TOKEN_ENV, paths[0]), paths[0]
    return None, "$%s is unset and none of the token files %s could be read" % (
        TOKEN_ENV, ", ".join(paths)), paths[-1]


IN_URL = "the URL's ?token="


def credentials(token: Optional[str], url: str) -> Tuple[Optional[str], str, Optional[str]]:
    """What a client with this ``token`` (None: not given) and ``url`` sends:
    ``(token for the Authorization header, where it came from, token file
    tried)``. A URL with ``?token=`` carries its own, so no lookup is done."""
    if token is not None:
        return token, "the token given to Bus()", None
    from urllib.parse import parse_qs, urlsplit  # websocket-client imports it anyway

    if "token" in parse_qs(urlsplit(url).query, keep_blank_values=True):
        return None, IN_URL, None
    return discover_token()


def refusal(
    url: str, e: Exception, token: Optional[str], source: str, token_file: Optional[str]
) -> errors.IpcbusError:
    """The error for a WebSocket upgrade refused with HTTP status ``e.status_code``
    (websocket-client's ``WebSocketBadStatusException``), as
    :func:`credentials` described the token that was sent."""
    status = getattr(e, "status_code", None)
    if status == 401:
        if token is None and source != IN_URL:
            return errors.Unauthorized(
                "%s needs a token (401) and none was found: %s. Pass token=..., or set IPCBUS_TOKEN, "
                "or IPCBUS_TOKEN_FILE / IPCBUS_DATA_DIR to the server's token file" % (url, source),
                token_file,
            )
        return errors.Unauthorized(
            "%s refused %s (401): it is not the server's current token" % (url, source), token_file
        )
    import json

    detail = ""
    try:  # websocket-client >= 1.x keeps the body: {"error": {"code", "msg"}}
        detail = " (%s)" % json.loads(getattr(e, "resp_body", None) or b"")["error"]["msg"]
    except Exception:
        pass
    if status == 403:
        return errors.Forbidden(
            "%s refused the connection (403): its Origin is not allowed; "
            "the server lets in other origins with --allow-origin%s" % (url, detail)
        )
    return errors.Unavailable("cannot connect to %s: HTTP status %s%s" % (url, status, detail))
