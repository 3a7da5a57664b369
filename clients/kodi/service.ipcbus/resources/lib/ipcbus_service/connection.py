"""Opening a connection to the bus as the settings say."""

from typing import Any

import ipcbus

from .settings import Settings

#: How long one request (and the connect) may take, in seconds.
REQUEST_TIMEOUT = 5.0


def connect(settings: Settings, reconnect: bool = True) -> Any:
    """A ``Bus`` to the configured host and port. With no token file set,
    the client's own lookup runs at each (re)connect; inside Kodi it finds
    the token of the bus this addon started (see docs/kodi.md). One attempt
    (``fail_fast``): the service retries by itself, between its checks for
    Kodi's abort request."""
    return ipcbus.Bus(settings.url, timeout=REQUEST_TIMEOUT, reconnect=reconnect, token=settings.token(),
                      fail_fast=True)
