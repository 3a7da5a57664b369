"""Python client for ipcbus, the publish/subscribe bus for live data.

Works in Kodi 19+ (Python 3.8+) with only ``websocket-client``
(``script.module.websocket``); uses MessagePack when ``msgpack`` is
installed and JSON otherwise, with the same API.

    from ipcbus import Bus
    with Bus() as bus:
        bus.set("weather.today", {"temp": 21.5})
        weather = bus.watch("weather.>")     # local mirror, kept current by push
        weather.wait_synced(5)
        print(weather["weather.today"])
"""

from .bus import DEFAULT_URL, Bus, Subscription
from .codec import JSON, MSGPACK
from .errors import (
    BadKey,
    BadPattern,
    IpcbusError,
    LimitReached,
    NotFound,
    RevMismatch,
    ServerError,
    StoreUnavailable,
    Timeout,
    TooLarge,
    Unauthorized,
    Forbidden,
    Unavailable,
)
from .event import Event, Meta
from .state import CLOSED, CONNECTING, OPEN, RECONNECTING
from .watch import Watch

__all__ = [
    "Bus",
    "Subscription",
    "Watch",
    "Event",
    "Meta",
    "DEFAULT_URL",
    "JSON",
    "MSGPACK",
    "IpcbusError",
    "ServerError",
    "NotFound",
    "RevMismatch",
    "BadKey",
    "BadPattern",
    "TooLarge",
    "LimitReached",
    "StoreUnavailable",
    "Unauthorized",
    "Forbidden",
    "Unavailable",
    "Timeout",
    "CONNECTING",
    "OPEN",
    "RECONNECTING",
    "CLOSED",
]
__version__ = "0.1.0"
