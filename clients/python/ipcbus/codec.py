"""The two wire encodings: MessagePack when the ``msgpack`` module is
installed, JSON otherwise (Kodi ships no msgpack). Same API either way."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

try:  # optional dependency
    import msgpack  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - exercised by the fallback test
    msgpack = None

MSGPACK = "ipcbus.v1.msgpack"
JSON = "ipcbus.v1.json"


def default_codec() -> str:
    """MessagePack if available, else JSON."""
    return MSGPACK if msgpack is not None else JSON


class Codec:
    """Encodes requests and decodes server messages for one subprotocol."""

    def __init__(self, name: Optional[str] = None) -> None:
        name = name or default_codec()
        if name == MSGPACK and msgpack is None:
            raise ValueError("the msgpack module is not installed; use codec=%r" % JSON)
        if name not in (MSGPACK, JSON):
            raise ValueError("unknown codec %r" % name)
        self.name = name
        if name == JSON:
            import json  # only for JSON: MessagePack does without it

            self._json = json

    @property
    def binary(self) -> bool:
        return self.name == MSGPACK

    def encode(self, message: dict) -> Any:
        if self.binary:
            return msgpack.packb(message, use_bin_type=True)
        return self._json.dumps(message, separators=(",", ":"), allow_nan=False)

    def decode(self, data: Any) -> dict:
        if self.binary:
            message = msgpack.unpackb(data, raw=False, strict_map_key=False)
        else:
            if isinstance(data, (bytes, bytearray)):
                data = data.decode("utf-8")
            message = self._json.loads(data)
        if not isinstance(message, dict):
            raise ValueError("server message is not a map")
        return message

