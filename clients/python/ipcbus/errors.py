"""Exceptions raised by the ipcbus client."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional


class IpcbusError(Exception):
    """Base class of every ipcbus error."""


class Unavailable(IpcbusError):
    """The bus cannot be reached, or the connection was lost.

    ``maybe_applied`` is true for a ``set`` or ``delete`` that was sent but
    not answered when the connection dropped: the server may have applied
    it. The client does not resend it; read the key to find out, or write
    with ``if_rev``, which applies at most once and so is safe to retry."""

    def __init__(self, msg: str, maybe_applied: bool = False) -> None:
        super().__init__(msg)
        self.maybe_applied = maybe_applied


class Timeout(IpcbusError):
    """No reply came within the client's timeout.

    ``maybe_applied`` is true for a ``set`` or ``delete`` that was sent: the
    server may have applied it (as for ``Unavailable``); a late reply is
    dropped. Read the key to find out, or write with ``if_rev``."""

    def __init__(self, msg: str, maybe_applied: bool = False) -> None:
        super().__init__(msg)
        self.maybe_applied = maybe_applied


class Unauthorized(IpcbusError):
    """The server refused the connection (HTTP 401): no token, or a wrong
    one. ``token_file`` is the token file the client tried, if any."""

    def __init__(self, msg: str, token_file: Optional[str] = None) -> None:
        super().__init__(msg)
        self.token_file = token_file


class Forbidden(IpcbusError):
    """The server refused the connection (HTTP 403): the request's
    ``Origin`` is not one the server allows (``--allow-origin``)."""


class ServerError(IpcbusError):
    """The server refused a request; ``code`` is the protocol error code."""

    code = "internal"

    def __init__(self, msg: str, code: Optional[str] = None, rev: Optional[int] = None) -> None:
        super().__init__(msg)
        if code is not None:
            self.code = code
        self.msg = msg
        self.rev = rev

    def __str__(self) -> str:
        return "%s: %s" % (self.code, self.msg)


class NotFound(ServerError):
    """The key (or subscription) does not exist."""

    code = "not_found"


class RevMismatch(ServerError):
    """``if_rev`` did not match; ``rev`` is the key's current rev (0: absent)."""

    code = "rev_mismatch"


class BadKey(ServerError):
    """The key breaks the key rules (see docs/protocol.md)."""

    code = "bad_key"


class BadPattern(ServerError):
    """The pattern breaks the pattern rules."""

    code = "bad_pattern"


class TooLarge(ServerError):
    """The value is larger than the server allows."""

    code = "too_large"


class LimitReached(ServerError):
    """A server limit was reached (for example subscriptions per connection)."""

    code = "limit"


class StoreUnavailable(ServerError, Unavailable):
    """A server with a backplane (docs/scaling.md) could not get the write
    confirmed by its shared store in time: it may or may not have been
    applied, so ``maybe_applied`` is true, as for a write lost in a
    disconnect (it is also an :class:`Unavailable`)."""

    code = "unavailable"

    def __init__(self, msg: str, code: Optional[str] = None, rev: Optional[int] = None) -> None:
        super().__init__(msg, code=code, rev=rev)
        self.maybe_applied = True


_BY_CODE = {
    cls.code: cls
    for cls in (NotFound, RevMismatch, BadKey, BadPattern, TooLarge, LimitReached, StoreUnavailable)
}


def from_wire(error: dict) -> ServerError:
    """The exception for an ``error`` map received from the server."""
    code = str(error.get("code", "internal"))
    cls = _BY_CODE.get(code, ServerError)
    return cls(str(error.get("msg", "")), code=code, rev=error.get("rev"))
