"""Where an old ``(author, name)`` pair lives on the bus: the key
``ipcx.<author>.<name>``, each part escaped so that every string the old
store took fits the key rules (docs/protocol.md §9.1) and comes back
unchanged. docs/kodi.md shows examples.

Escaping: the UTF-8 bytes of ``%``, ``.``, ``*``, ``>``, ASCII controls and
space, C1 controls, the other Unicode white space, and lone surrogates
become ``%XX`` (upper-case hex); an empty part is a lone ``%``. Every other
character stays as it is. The set is fixed here rather than taken from
Python's Unicode tables, so that every Python version (Kodi's 3.8 and a
newer one on the desktop) makes the same key for the same name.
"""

from .errors import NameTooLongError

PREFIX = "ipcx"
#: Where savedata() keeps an author's snapshot: ipcx-saved.<addon>.<author>.
SAVED_PREFIX = "ipcx-saved"
#: The bus's limit on a key (docs/protocol.md §9.1).
MAX_KEY_BYTES = 256
#: An empty part: a non-empty part never escapes to a bare "%".
EMPTY = "%"
#: Unicode White_Space beyond ASCII (the server refuses white space in keys).
_WHITE_SPACE = frozenset([0x85, 0xA0, 0x1680, 0x180E, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
                         + list(range(0x2000, 0x200B)))
_HEX = frozenset("0123456789ABCDEF")


def _must_escape(ch: str) -> bool:
    code = ord(ch)
    return (ch in "%.*> " or code < 0x20 or 0x7F <= code <= 0x9F or code in _WHITE_SPACE
            or 0xD800 <= code <= 0xDFFF)


def escape(part: str) -> str:
    """One key token for ``part`` (any string)."""
    if part == "":
        return EMPTY
    out = []
    for ch in part:
        if _must_escape(ch):
            out.extend("%%%02X" % b for b in ch.encode("utf-8", "surrogatepass"))
        else:
            out.append(ch)
    return "".join(out)


def unescape(token: str) -> str:
    """The string ``escape`` made ``token`` from; ``ValueError`` for a token
    it cannot have made (so that each name has exactly one key)."""
    if token == EMPTY:
        return ""
    raw = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "%":
            pair = token[i + 1:i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise ValueError("bad escape in %r" % token)
            raw.append(int(pair, 16))
            i += 3
        else:
            raw.extend(token[i].encode("utf-8"))
            i += 1
    part = raw.decode("utf-8", "surrogatepass")
    if escape(part) != token:
        raise ValueError("%r is not an escaped name" % token)
    return part


def _join(prefix: str, first: str, second: str, what: str) -> str:
    key = "%s.%s.%s" % (prefix, escape(first), escape(second))
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise NameTooLongError("%s: the bus key for author=%r, name=%r would be %d bytes, over the bus's "
                               "%d: use a shorter name or author" % (what, first, second, size, MAX_KEY_BYTES))
    return key


def key_for(author: str, name: str) -> str:
    """The bus key of ``name`` by ``author``; :class:`NameTooLongError` if it
    cannot fit."""
    return _join(PREFIX, author, name, "set/get")


def saved_key(addon: str, author: str) -> str:
    """The key of the snapshot ``addon`` saved of ``author``'s data."""
    return _join(SAVED_PREFIX, addon, author, "savedata")


def pattern_for(author=None) -> str:
    """The pattern of every old key, or of one author's."""
    return "%s.%s.*" % (PREFIX, "*" if author is None else escape(author))


def split(key: str):
    """``(author, name)`` of a key made by :func:`key_for`; None for any
    other key."""
    parts = key.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        return None
    try:
        return unescape(parts[1]), unescape(parts[2])
    except ValueError:
        return None
