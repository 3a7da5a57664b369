"""The exceptions of the old ``ipcclientxerrors`` module (service.ipcdatastore
by KenV99, resources/lib/ipcclientxerrors.py), with the same names,
hierarchy, error numbers, ``message`` and ``updatemessage`` methods, so that
an addon's ``except`` clauses and ``exc.errno`` checks keep working.

Two differences: ``str(exc)`` is the message (the old classes left it
empty), and two errors the old store could not have are new:
:class:`NameTooLongError` and :class:`ObjectTooLargeError`. Classes the bus
never raises (``ServerReconnectFailedError``, ``UseCachedCopyError``,
``NoError``) are kept for the ``except`` clauses that name them.
"""

# The old error numbers, spelling included (IPCERROR_UKNOWN).
IPCERROR_UKNOWN = 0
IPCERROR_NO_VALUE_FOUND = 1
IPCERROR_USE_CACHED_COPY = 2
IPCERROR_SERVER_TIMEOUT = 3
IPCERROR_CONNECTION_CLOSED = 4
IPCERROR_NONSERIALIZABLE = 5
IPCERROR_SAVEFAILED = 6
IPCERROR_RESTOREFAILED = 7
# New: a bus key is at most 256 bytes; a bus value at most max_value_bytes.
IPCERROR_NAME_TOO_LONG = 8
IPCERROR_TOO_LARGE = 9


class IPCClientError(Exception):
    """Base class of every error of the old API."""

    errno = -1

    def __init__(self, message=""):
        Exception.__init__(self, message)
        self.message = message

    def __str__(self):
        # The old code filled in .message after the exception was made.
        return self.message


class VarNotFoundError(IPCClientError):
    """No value is stored for this author and name."""

    errno = IPCERROR_NO_VALUE_FOUND

    def __init__(self):
        IPCClientError.__init__(self)
        self.varname = None
        self.author = None

    def updatemessage(self, varname, author):
        self.varname, self.author = varname, author
        self.message = "Variable not found on server for author={0}, var_name={1}".format(author, varname)


class ServerReconnectFailedError(IPCClientError):
    """Kept for old ``except`` clauses: the bus reconnects by itself, and a
    connection it cannot get back is a :class:`ServerUnavailableError`."""

    errno = IPCERROR_CONNECTION_CLOSED

    def __init__(self, uri, tb=""):
        IPCClientError.__init__(self, "Server connection closed and could not be reopened for {0}".format(uri))
        self.tb = tb


class ServerUnavailableError(IPCClientError):
    """The bus cannot be reached (or refused this client, or did not answer
    in time). ``tb`` is the bus client's own message, which the message
    repeats. ``maybe_applied`` is true when a write was sent but its reply
    was lost: it may or may not have been applied."""

    errno = IPCERROR_SERVER_TIMEOUT

    def __init__(self, uri, tb=""):
        message = "Server unavailable for uri:{0}".format(uri)
        IPCClientError.__init__(self, message + (": " + tb if tb else ""))
        self.tb = tb
        self.maybe_applied = False


class ObjectNotSerializableError(IPCClientError, TypeError):
    """The value cannot be stored: the bus takes data (MessagePack or JSON
    values), not arbitrary Python objects. Also a ``TypeError``."""

    errno = IPCERROR_NONSERIALIZABLE

    def updatemessage(self, obj, reason=""):
        self.message = "The object of type {0} provided failed serialization".format(type(obj))
        if reason:
            self.message += ": " + reason


class ObjectTooLargeError(IPCClientError):
    """New: the value is larger than the bus takes (``max_value_bytes``,
    1 MiB by default)."""

    errno = IPCERROR_TOO_LARGE


class NameTooLongError(IPCClientError, ValueError):
    """New: the author and name, escaped, do not fit in a bus key (256
    bytes). Also a ``ValueError``."""

    errno = IPCERROR_NAME_TOO_LONG


class UseCachedCopyError(IPCClientError):
    """Kept for old ``except`` clauses: it was internal to the old client."""

    errno = IPCERROR_USE_CACHED_COPY

    def __init__(self):
        IPCClientError.__init__(self, "Using cached copy")


class SaveFailedError(IPCClientError):
    """:meth:`IPCClientX.savedata` could not save."""

    errno = IPCERROR_SAVEFAILED

    def updatemessage(self, author, fn):
        self.message = "Save failed for author={0}, filename={1}".format(author, fn)


class RestoreFailedError(IPCClientError):
    """:meth:`IPCClientX.restoredata` could not restore (nothing saved)."""

    errno = IPCERROR_RESTOREFAILED

    def updatemessage(self, author, fn):
        self.message = "Restore failed for author={0}, filename={1}".format(author, fn)


class UnknownError(IPCClientError):
    """Any other failure; ``msg`` is the exception (or text) behind it."""

    errno = IPCERROR_UKNOWN

    def __init__(self, msg, tb=""):
        IPCClientError.__init__(self, str(msg))
        self.tb = tb


class NoError(IPCClientError):
    """Kept for old code: the old client's "no error" marker."""
