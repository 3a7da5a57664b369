"""The old ``IPCClientX`` API of service.ipcdatastore, on ipcbus.

An addon written for the old datastore moves over by changing one import::

    from ipcbus.compat import IPCClientX  # was: from resources.lib.ipcclientx import IPCClientX

Signatures, defaults, return values and exceptions follow the old code
(KenV99's service.ipcdatastore: resources/lib/ipcclientx.py and
ipcclientxerrors.py, with ``IPCClient`` from script.module.ipc's
lib/ipc/ipcclient.py); this is a fresh implementation, not a copy. As
before, a failure is logged and the call returns ``False`` (``set`` and the
other commands) or ``None`` (``get``, ``delete``, ``get_data_list``),
unless ``raise_exception`` is true: then it raises the old exception. Every
exception of the old errors module is here too, so
``import ipcbus.compat as ipcclientxerrors`` stands in for it.
docs/kodi.md has the table of every call and what it does now.

Layout:

- :mod:`.client`: ``IPCClientX``: connection, errors, set/get/delete/lists;
- :mod:`.saved`: savedata/restoredata/delete_data, add/remove_persistence;
- :mod:`.cache`: the local cache, push-fed Watches of the keys read;
- :mod:`.keys`: ``(author, name)`` to the bus key ``ipcx.<author>.<name>``;
- :mod:`.values`: the stored envelope ``{"v": value, "ts": time}``;
- :mod:`.errors`: the old exception classes and error numbers.
"""

from .client import DEFAULT_AUTHOR, Data, IPCClientX
from .errors import (
    IPCERROR_CONNECTION_CLOSED,
    IPCERROR_NAME_TOO_LONG,
    IPCERROR_NO_VALUE_FOUND,
    IPCERROR_NONSERIALIZABLE,
    IPCERROR_RESTOREFAILED,
    IPCERROR_SAVEFAILED,
    IPCERROR_SERVER_TIMEOUT,
    IPCERROR_TOO_LARGE,
    IPCERROR_UKNOWN,
    IPCERROR_USE_CACHED_COPY,
    IPCClientError,
    NameTooLongError,
    NoError,
    ObjectNotSerializableError,
    ObjectTooLargeError,
    RestoreFailedError,
    SaveFailedError,
    ServerReconnectFailedError,
    ServerUnavailableError,
    UnknownError,
    UseCachedCopyError,
    VarNotFoundError,
)

__all__ = [
    "IPCClientX", "Data", "DEFAULT_AUTHOR",
    "IPCClientError", "VarNotFoundError", "ServerReconnectFailedError", "ServerUnavailableError",
    "ObjectNotSerializableError", "ObjectTooLargeError", "NameTooLongError", "UseCachedCopyError",
    "SaveFailedError", "RestoreFailedError", "UnknownError", "NoError",
    "IPCERROR_UKNOWN", "IPCERROR_NO_VALUE_FOUND", "IPCERROR_USE_CACHED_COPY", "IPCERROR_SERVER_TIMEOUT",
    "IPCERROR_CONNECTION_CLOSED", "IPCERROR_NONSERIALIZABLE", "IPCERROR_SAVEFAILED", "IPCERROR_RESTOREFAILED",
    "IPCERROR_NAME_TOO_LONG", "IPCERROR_TOO_LARGE",
]
