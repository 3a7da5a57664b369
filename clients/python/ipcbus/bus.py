"""`Bus`: a synchronous connection to ipcbus, for addon code and scripts.

One background thread reads the socket and routes replies and events;
another runs subscription callbacks. Requests may come from any thread,
including from inside a callback.
"""

from __future__ import annotations

import itertools
import os
import threading
import time

from . import _auth, errors, state
from . import _log as log
from ._dispatch import Dispatcher
from ._ephemeral import EphemeralKeys, ttl_ms
from .codec import Codec
from .event import Event, meta_from_wire
from .subscription import Subscription

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

    import websocket

    from .watch import Watch  # watch.py imports this module

DEFAULT_URL = "ws://127.0.0.1:9099/ws"
#: Reconnect backoff: first wait, and the longest wait, in seconds.
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
#: A connection silent this long is taken for dead (the server pings every
#: 10 s); also the longest a send may block on a peer that stopped reading.
SOCKET_TIMEOUT = 45.0
#: How long close() waits for the server to answer its Close frame.
CLOSE_TIMEOUT = 5.0
#: Requests sent at once when ephemeral keys are set again after a reconnect.
REASSERT_BATCH = 256
#: A server that made another number of the subscriptions named at connect
#: than it was asked for has those (ids 1 to n) ended first: at most this many.
MAX_STRAY_SUBS = 10000
_MISSING = object()


class _Lost:
    """A waiter's reply when the connection was lost before it came."""

    __slots__ = ("why", "too_large")

    def __init__(self, why: Exception) -> None:
        self.why = why
        self.too_large = isinstance(why, _ClosedByServer) and why.code == CLOSE_TOO_BIG


class _ClosedByServer(ConnectionError):
    """The server closed the connection, with this close code."""

    def __init__(self, data: bytes) -> None:
        self.code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
        reason = data[2:].decode("utf-8", "replace")
        super().__init__("closed by the server%s%s" % (
            " (%s)" % self.code if self.code else "", ": %s" % reason if reason else ""))


#: The WebSocket close code for a message over the server's max_frame_bytes.
CLOSE_TOO_BIG = 1009
#: The Close frame's opcode (RFC 6455 §5.2; websocket.ABNF.OPCODE_CLOSE).
OPCODE_CLOSE = 0x8
#: Requests that change the store: one that was in flight when the
#: connection dropped may have been applied, so it is never resent.
WRITES = ("set", "del")


class _Waiter:
    __slots__ = ("done", "reply", "on_reply", "abandoned", "claimed")

    def __init__(self, on_reply: Optional[Callable[[dict], None]] = None) -> None:
        self.done = threading.Event()
        self.reply: Any = None
        self.on_reply = on_reply
        # Both under Bus._lock: the caller gave up, or the reader took the reply.
        self.abandoned = False
        self.claimed = False


class Bus:
    """A connection to the bus.

    >>> with Bus() as bus:                      # doctest: +SKIP
    ...     bus.set("weather.today", {"temp": 21.5})
    ...     bus.get("weather.today")["temp"]
    21.5

    ``url`` defaults to ``$IPCBUS_URL`` or ``ws://127.0.0.1:9099/ws``; ``codec``
    to MessagePack when the ``msgpack`` module is installed, JSON otherwise.
    The Bus keeps docs/clients.md's reconnect contract. The first connect
    retries with backoff for ``connect_timeout`` seconds (default:
    ``timeout``), so a program that starts before the bus just waits
    (``fail_fast=True``: one attempt). With ``reconnect`` (the default) a lost
    connection is re-established with backoff and every subscription
    replays in full; a subscription passes on only what changed while it was
    down (new values, and a ``del`` with rev 0 for keys deleted meanwhile),
    so its callback misses nothing and sees no duplicate. A call made while
    the connection is down waits for it, within its ``timeout``; a ``set``
    or ``delete`` that was in flight when it dropped raises
    :class:`Unavailable` with ``maybe_applied`` set, and is not resent.
    Keys this Bus set with ``ephemeral=True`` are set again before it counts
    as reconnected (see :meth:`set`). ``on_state(state, reason)`` is called
    at every change of :attr:`state` (``"connecting"``, ``"open"``,
    ``"reconnecting"``, ``"closed"``).

    ``token`` is the server's access token, sent as ``Authorization: Bearer``.
    Without it the Bus looks, at every (re)connect, for ``$IPCBUS_TOKEN``,
    then the token file the local server wrote (``$IPCBUS_TOKEN_FILE``, else
    ``token`` in ``$IPCBUS_DATA_DIR``; else, inside Kodi, the token of the
    bus ``service.ipcbus`` started,
    ``special://profile/addon_data/service.ipcbus/token``, then the platform
    data directory's, e.g. ``~/.local/share/ipcbus/token``), unless ``url``
    carries ``?token=``.
    A refused connection raises :class:`Unauthorized` (401: no or wrong
    token) or :class:`Forbidden` (403: origin not allowed) at once; while
    reconnecting, these are logged and retried, as the token may change.

    :attr:`max_value_bytes` and :attr:`max_frame_bytes` are the server's
    limits from its hello (``None`` if it did not say); a larger value or
    request raises :class:`TooLarge` before anything is sent.

    ``subscribe`` (a list or tuple of patterns) names subscriptions to make
    with the connection itself (docs/protocol.md §5.1): they go in the first
    connect's URL (``sub=`` parameters, after the URL's own query), so their
    first values arrive right after the server's hello, with no round trip
    of their own. The first :meth:`subscribe` (without ``meta``) or
    :meth:`watch` of each listed pattern returns that subscription, with the
    events that came meanwhile; later ones make their own. Until it is
    taken, a subscription's events wait, at most ``callback_capacity`` of
    them, then the newest per key (as in the callback queue), and it lasts
    until :meth:`close`: list only what the program takes. A pattern the
    server refuses raises :class:`BadPattern` (more than its ``max_subs``:
    :class:`LimitReached`) from ``Bus()`` at once. A server older than this
    gets them as ``sub`` requests before the Bus counts as open. After a
    reconnect they are made again as every subscription is. A ``url`` with
    ``sub=`` parameters of its own (``?sub=a.%3E``) raises ``ValueError``
    before anything is sent: name them with ``subscribe``. A parameter
    named ``sub`` counts, with or without a ``=``; others (``?token=``,
    ``?x=sub``) are kept.
    """

    def __init__(
        self,
        url: Optional[str] = None,
        timeout: float = 5.0,
        codec: Optional[str] = None,
        reconnect: bool = True,
        callback_capacity: int = 10000,
        token: Optional[str] = None,
        *,
        connect_timeout: Optional[float] = None,
        fail_fast: bool = False,
        on_state: Optional[state.OnState] = None,
        subscribe: Sequence[str] = (),
    ) -> None:
        self.url = url or os.environ.get("IPCBUS_URL", DEFAULT_URL)
        patterns = _named_patterns(subscribe)
        _check_url(self.url)
        self.timeout = timeout
        self.connect_timeout = timeout if connect_timeout is None else connect_timeout
        self.reconnect = reconnect
        self._state = state.State(on_state)
        self._token = token
        self._ephemeral = EphemeralKeys()
        self._codec = Codec(codec)
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: Dict[int, _Waiter] = {}
        self._routes: Dict[int, Subscription] = {}
        self._subscriptions: List[Subscription] = []
        self._closed = False
        self._closing = threading.Event()
        # Under _lock: whether requests may go out, and on which connection
        # (a new number at every connect). Calls wait on _ready.
        self._connected = False
        self._generation = 0
        self._ready = threading.Condition(self._lock)
        self.store: Optional[str] = None
        self.max_value_bytes: Optional[int] = None
        self.max_frame_bytes: Optional[int] = None
        self._dispatcher = Dispatcher(callback_capacity)
        # The subscriptions of `subscribe`, in order (ids 1..n on the first
        # connection), and those no subscribe() or watch() took yet.
        self._named = [Subscription(self, p, None, direct=False, held=max(callback_capacity, 1)) for p in patterns]
        self._subscriptions.extend(self._named)
        self._unclaimed: Dict[str, List[Subscription]] = {}
        for sub in self._named:
            self._unclaimed.setdefault(sub.pattern, []).append(sub)
        self._ws, hello = self._connect_first(fail_fast)
        self._adopt(hello)
        with self._lock:
            self._connected = True
        self._state.set(state.OPEN, "connected to %s" % self.url)
        self._reader = threading.Thread(target=self._read_loop, name="ipcbus-reader", daemon=True)
        self._reader.start()

    # -- connection -------------------------------------------------------

    @property
    def codec(self) -> str:
        """The subprotocol in use."""
        return self._codec.name

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def state(self) -> str:
        """``"connecting"``, ``"open"``, ``"reconnecting"`` or ``"closed"``."""
        return self._state.name

    @property
    def state_reason(self) -> str:
        """Why the Bus is in its state (for example why the connection was lost)."""
        return self._state.reason

    def _connect_first(self, fail_fast: bool) -> Tuple["websocket.WebSocket", dict]:
        """The first connect: retried with backoff until ``connect_timeout``,
        unless ``fail_fast``. A refusal (401, 403) is final at once."""
        self._state.set(state.CONNECTING, "connecting to %s" % self.url)
        deadline = time.monotonic() + self.connect_timeout
        delay = BACKOFF_FIRST
        while True:
            try:
                ws, hello = self._open(min(self.timeout, max(deadline - time.monotonic(), 0.1)), self._named)
                self._make_named(ws, hello)
                return ws, hello
            except errors.Unavailable as e:
                left = deadline - time.monotonic()
                if fail_fast or left <= 0:
                    self._state.set(state.CLOSED, str(e))
                    if fail_fast:
                        raise
                    raise errors.Unavailable(
                        "%s (kept trying for %.1f s: is `ipcbus serve` running, on this port?)"
                        % (e, self.connect_timeout)) from e
            except errors.IpcbusError as e:
                self._state.set(state.CLOSED, str(e))
                raise
            time.sleep(min(delay, left))
            delay = min(delay * 2, BACKOFF_MAX)

    def _open(
        self, timeout: Optional[float] = None, named: Sequence[Subscription] = ()
    ) -> Tuple["websocket.WebSocket", dict]:
        """Connects and reads the hello; the upgrade request names the
        subscriptions ``named`` (the first connect's)."""
        # Imported here, not with this module: websocket-client and what it
        # imports (http.client, email, ssl, logging) are most of what a
        # plugin's cold start spends (docs/benchmarks.md, Issue 17).
        import websocket  # websocket-client; in Kodi: script.module.websocket

        token, source, token_file = _auth.credentials(self._token, self.url)
        url = _with_subs(self.url, [sub.pattern for sub in named]) if named else self.url
        try:
            ws = websocket.create_connection(
                url,
                timeout=timeout or self.timeout,
                subprotocols=[self._codec.name],
                enable_multithread=True,
                header=["Authorization: Bearer %s" % token] if token else [],
                # Not a browser: send no Origin. websocket-client would make
                # one from the URL, which the server refuses when the host is
                # a name other than localhost.
                suppress_origin=True,
            )
        except websocket.WebSocketBadStatusException as e:
            if named and getattr(e, "status_code", None) in (400, 429):
                raise _refused_subs(self.url, e) from e
            raise _auth.refusal(self.url, e, token, source, token_file) from e
        except Exception as e:
            raise errors.Unavailable("cannot connect to %s: %s" % (self.url, e)) from e
        try:
            opcode, data = ws.recv_data()
            hello = self._codec.decode(data)
        except Exception as e:
            ws.shutdown()
            raise errors.Unavailable("cannot connect to %s: %s" % (self.url, e)) from e
        if hello.get("ev") != "hello":
            ws.close()
            raise errors.Unavailable("%s did not greet with hello" % self.url)
        ws.settimeout(SOCKET_TIMEOUT)
        return ws, hello

    def _make_named(self, ws: "websocket.WebSocket", hello: dict) -> None:
        """Routes the subscriptions named in the first upgrade request,
        before any event is read (they may have come with the hello): ids 1
        to n when the hello says the server made all n (§5.1). A server older
        than that (no ``subs``) gets them as ``sub`` requests, after an
        ``unsub`` of those it made if it made another number."""
        subs = self._named
        if not subs:
            return
        count = hello.get("subs")
        if count == len(subs):
            with self._lock:
                for sub_id, sub in enumerate(subs, 1):
                    sub._server_id = sub_id
                    self._routes[sub_id] = sub
            return
        log.info("ipcbus: %s made %s of the %d subscriptions named at connect; asking with sub requests",
                 self.url, count, len(subs))
        messages = [sub._request() for sub in subs]
        by_message = {id(message): sub for message, sub in zip(messages, subs)}

        def on_reply(message: dict, reply: dict) -> None:
            if not reply.get("ok"):
                raise _refused_list(self.url, reply.get("error") or {})
            with self._lock:  # before the next frame: its events are routed
                sub = by_message[id(message)]
                sub._server_id = int(reply["sub"])
                self._routes[sub._server_id] = sub

        try:
            ws.settimeout(self.timeout)
            if isinstance(count, int) and count > 0:
                for sub_id in range(1, min(count, MAX_STRAY_SUBS) + 1):
                    self._send_on(ws, {"op": "unsub", "sub": sub_id})
            self._exchange(ws, messages, on_reply, self._route)
            ws.settimeout(SOCKET_TIMEOUT)
        except errors.ServerError:
            ws.close()
            raise
        except Exception as e:
            ws.shutdown()
            with self._lock:  # the next attempt starts them over
                self._routes.clear()
                for sub in subs:
                    sub._server_id = None
                    sub._known.clear()
                    sub._held = []
            raise errors.Unavailable("connection lost while subscribing: %s" % e) from e

    def _adopt(self, hello: dict) -> None:
        """Takes on a new session's identity."""
        self.session = hello.get("session")
        # Revs (and so `since`) only mean something within one store.
        self.store_changed = self.store not in (None, hello.get("store"))
        self.store = hello.get("store")
        self.max_value_bytes = hello.get("max_value_bytes")
        self.max_frame_bytes = hello.get("max_frame_bytes")

    def close(self) -> None:
        """Closes the connection and stops the background threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._connected = False
            self._ready.notify_all()  # calls waiting for a connection give up
        self._closing.set()
        self._state.set(state.CLOSED, "closed by the client")
        ws = self._ws
        try:
            # Not ws.close(): it waits for the server's Close frame, which the
            # reader thread takes first, so it waited out its timeout. The
            # reader stops when that frame comes.
            ws.send_close()
        except Exception:
            pass
        self._fail_pending(errors.Unavailable("the bus connection is closed"))
        if threading.current_thread() is not self._reader:
            self._reader.join(timeout=CLOSE_TIMEOUT)
        try:
            ws.shutdown()
        except Exception:
            pass
        self._dispatcher.stop()

    def __enter__(self) -> "Bus":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- requests ---------------------------------------------------------

    def _encode(self, message: dict) -> Any:
        """The message on the wire. A value the codec cannot encode (a
        ``datetime``, a ``set``, ``bytes`` in JSON mode, NaN in JSON mode, an
        integer past 64 bits) raises ``TypeError`` or ``ValueError`` naming
        what it is; nothing is sent and the connection stays up."""
        try:
            return self._codec.encode(message)
        except TypeError as e:
            raise TypeError("%s %r: the value cannot be encoded as %s: %s"
                            % (message.get("op"), message.get("key"), self._codec.name, e)) from e
        except (ValueError, OverflowError) as e:
            raise ValueError("%s %r: the value cannot be encoded as %s: %s"
                             % (message.get("op"), message.get("key"), self._codec.name, e)) from e

    def _send(self, data: Any) -> None:
        try:
            with self._send_lock:
                self._send_data(self._ws, data)
        except Exception as e:
            raise errors.Unavailable("connection lost: %s" % e) from e

    def _send_on(self, ws: "websocket.WebSocket", message: dict) -> None:
        self._send_data(ws, self._codec.encode(message))

    def _send_data(self, ws: "websocket.WebSocket", data: Any) -> None:
        if self._codec.binary:
            ws.send_binary(data)
        else:
            ws.send(data)

    def _call(
        self,
        message: dict,
        on_reply: Optional[Callable[[dict], None]] = None,
        on_send: Optional[Callable[[], Optional[Callable[[], None]]]] = None,
    ) -> dict:
        """Sends a request and waits for its reply, all within ``timeout``:
        while the connection is down it waits for it. A read or ``sub`` that
        was in flight when the connection dropped is sent again; a write is
        not (``Unavailable`` with ``maybe_applied``). ``on_send`` runs just
        before the request goes out (in send order); what it returns is
        called if the send fails."""
        if threading.current_thread() is self._reader:
            raise RuntimeError("ipcbus: a Watch or on_state callback cannot make requests (it runs on the reader thread)")
        deadline = time.monotonic() + self.timeout
        rid = next(self._ids)
        message["id"] = rid  # kept on a resend: the old connection is gone
        data = self._encode(message)
        self._check_size(message, data)
        while True:
            waiter = _Waiter(on_reply)
            self._send_request(rid, waiter, data, deadline, on_send)
            if not waiter.done.wait(max(deadline - time.monotonic(), 0)):
                with self._lock:
                    # Left in place: if a late `sub` reply comes, the reader undoes it.
                    waiter.abandoned = not waiter.claimed
                if waiter.abandoned:
                    if message["op"] in WRITES:  # it was sent: the server may have applied it
                        raise errors.Timeout(
                            "no reply to %s %r within %.1f s; it may have been applied. Read the key to find "
                            "out, or write with if_rev, which is safe to retry"
                            % (message["op"], message.get("key"), self.timeout),
                            maybe_applied=True,
                        )
                    raise errors.Timeout("no reply to %s within %.1f s" % (message["op"], self.timeout))
                waiter.done.wait()  # the reader has the reply in hand
            reply = waiter.reply
            if isinstance(reply, _Lost):
                self._raise_lost(message, reply)
                continue
            if isinstance(reply, Exception):
                raise reply
            if not reply.get("ok"):
                raise errors.from_wire(reply.get("error") or {})
            return reply

    def _send_request(
        self,
        rid: int,
        waiter: _Waiter,
        data: Any,
        deadline: float,
        on_send: Optional[Callable[[], Optional[Callable[[], None]]]],
    ) -> None:
        """Registers ``waiter`` and sends, once connected (waiting until
        ``deadline`` for that)."""
        failed_on = None  # a connection a send failed on: wait for the next
        while True:
            with self._lock:
                ready = self._ready.wait_for(
                    lambda: self._closed or (self._connected and self._generation != failed_on),
                    max(deadline - time.monotonic(), 0),
                )
                if self._closed:
                    raise errors.Unavailable("the bus connection is closed")
                if not ready:
                    raise errors.Unavailable("not connected to %s within %.1f s (%s: %s)" % (
                        self.url, self.timeout, self._state.name, self._state.reason))
                ws, generation = self._ws, self._generation
                self._pending[rid] = waiter
            try:
                with self._send_lock:
                    undo = on_send() if on_send is not None else None
                    try:
                        self._send_data(ws, data)
                    except Exception:
                        if undo is not None:
                            undo()
                        raise
                return
            except Exception as e:
                # The frame did not go out whole, so nothing was applied.
                # Make the reader notice too, and wait for the next connection.
                log.debug("ipcbus: send failed, waiting for a reconnect: %s", e)
                with self._lock:
                    self._pending.pop(rid, None)
                failed_on = generation
                try:
                    ws.shutdown()
                except Exception:
                    pass

    def _raise_lost(self, message: dict, lost: _Lost) -> None:
        """Raises for a request whose connection was lost before its reply,
        unless it is safe to send again."""
        op, key = message["op"], message.get("key")
        if lost.too_large:
            raise errors.TooLarge("%s %r: the server closed the connection: frame too big (%s)" % (op, key, lost.why))
        if not self.reconnect:
            raise errors.Unavailable("connection lost: %s" % lost.why, maybe_applied=op in WRITES)
        if op in WRITES:
            raise errors.Unavailable(
                "%s %r: connection lost before the reply (%s); it may have been applied. Read the key "
                "to find out, or write with if_rev, which is safe to retry" % (op, key, lost.why),
                maybe_applied=True,
            )

    def _check_size(self, message: dict, data: Any) -> None:
        """``TooLarge`` for a request the server would refuse for its size."""
        limit = self.max_frame_bytes
        size = len(data)  # JSON frames are ASCII (json.dumps escapes the rest)
        if limit is not None and size > limit:
            raise errors.TooLarge("%s %r: the request is %d bytes, over the server's max_frame_bytes (%d); "
                                  "nothing was sent" % (message["op"], message.get("key"), size, limit))
        limit = self.max_value_bytes
        # Only MessagePack: the limit is on the value's MessagePack encoding,
        # which a JSON request does not show (the server answers too_large).
        if message["op"] == "set" and self._codec.binary and limit is not None and len(data) > limit:
            size = len(self._codec.encode(message["value"]))
            if size > limit:
                raise errors.TooLarge("set %r: the value is %d bytes, over the server's max_value_bytes (%d); "
                                      "nothing was sent" % (message["key"], size, limit))

    def set(
        self,
        key: str,
        value: Any,
        if_rev: Optional[int] = None,
        *,
        persist: bool = False,
        ephemeral: bool = False,
        ttl: Optional[float] = None,
    ) -> int:
        """Sets ``key`` to ``value``; returns the rev of the write.

        - ``if_rev``: write only if the key's rev is that (0: only if the key
          does not exist); otherwise :class:`RevMismatch`.
        - ``persist``: the server writes the value to disk before it answers;
          it survives a restart of the server.
        - ``ephemeral``: the server deletes the key when this connection ends
          (subscribers see a ``del``). After an automatic reconnect the Bus
          sets the key again, with the last value it was asked for, before it
          counts as connected: only if the key has no value or still holds
          this Bus's write (another client's write meanwhile wins). A
          ``delete`` or a non-ephemeral ``set`` of the key by this Bus ends
          that. Cannot be combined with ``persist``.
        - ``ttl``: the server deletes the key after this many seconds (at
          least 1 ms).

        >>> bus.set("svc.weather.online", True, ephemeral=True)  # doctest: +SKIP
        """
        if persist and ephemeral:
            raise ValueError("persist and ephemeral exclude each other: an ephemeral key ends with its connection")
        message: Dict[str, Any] = {"op": "set", "key": key, "value": value}
        if if_rev is not None:
            message["if_rev"] = if_rev
        if persist:
            message["persist"] = True
        if ephemeral:
            message["ephemeral"] = True
        if ttl is not None:
            message["ttl_ms"] = ttl_ms(ttl)
        if not ephemeral:
            return int(self._call(message, on_send=lambda: self._ephemeral.forget(key))["rev"])
        # Recorded when the request goes out, not before: a reconnect sets
        # only what was sent (a set still waiting for the connection would
        # be written twice), and a set that gave up waiting is not recorded.
        import copy  # only here: most programs set no ephemeral key

        value = copy.deepcopy(value)
        sent: List[Tuple[Any, Any]] = []

        def on_send() -> Callable[[], None]:
            claim, previous = self._ephemeral.begin(key, value, ttl)
            sent.append((claim, previous))
            return lambda: self._ephemeral.refused(key, claim, previous)

        def on_reply(reply: dict) -> None:  # on the reader thread, before a reconnect can begin
            if reply.get("ok"):
                self._ephemeral.acked(key, sent[-1][0], int(reply["rev"]))

        try:
            return int(self._call(message, on_reply, on_send)["rev"])
        except errors.ServerError:
            if sent:
                self._ephemeral.refused(key, *sent[-1])
            raise

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """The value of ``key``; ``default`` if given and the key is absent,
        else :class:`NotFound`."""
        try:
            return self._call({"op": "get", "key": key}).get("value")
        except errors.NotFound:
            if default is _MISSING:
                raise
            return default

    def get_with_rev(self, key: str) -> Tuple[Any, int]:
        """``(value, rev)`` of ``key``, or :class:`NotFound`."""
        reply = self._call({"op": "get", "key": key})
        return reply.get("value"), int(reply["rev"])

    def delete(self, key: str, if_rev: Optional[int] = None) -> int:
        """Deletes ``key``; returns the rev of the deletion."""
        message = {"op": "del", "key": key}
        if if_rev is not None:
            message["if_rev"] = if_rev
        return int(self._call(message, on_send=lambda: self._ephemeral.forget(key))["rev"])

    def keys(self, pattern: Optional[str] = None) -> Dict[str, int]:
        """Keys that have a value, with their revs, sorted; all or those
        matching ``pattern`` (``*`` one token, ``>`` the rest)."""
        message = {"op": "keys"}
        if pattern is not None:
            message["pattern"] = pattern
        return {k["key"]: int(k["rev"]) for k in self._call(message)["keys"]}

    # -- subscriptions ----------------------------------------------------

    def subscribe(self, pattern: str, callback: Callable[[Event], None], *, meta: bool = False) -> Subscription:
        """Calls ``callback(event)`` with each matching key's current value,
        then an ``Event`` of kind ``"synced"``, then every change. Callbacks run
        on one background thread, in order, and may call the bus.

        With ``meta=True`` each ``"val"`` event's ``meta`` is a :class:`Meta`:
        what the server says of that write (docs/protocol.md §4): ``age_ms``
        (``None`` when the server does not know, as for a value restored from
        its data file), ``persist``, ``ephemeral`` and ``ttl_ms`` (what was
        left when it was sent, ``None`` without a TTL). The subscription asks
        for it again after a reconnect. A server older than ``meta`` sends
        none: ``meta`` is then ``None``, "not known".

        The first call (without ``meta``) for a pattern named in
        ``Bus(subscribe=...)`` returns the subscription made at connect and
        sends nothing: the callback gets the events that came meanwhile
        first, in order.

        >>> bus.subscribe("svc.>", lambda ev: print(ev.key, ev.meta), meta=True)  # doctest: +SKIP
        """
        if not meta:
            named = self._claim(pattern)
            if named is not None:
                named._claim(callback, inline=False)
                return named
        return self._subscribe(Subscription(self, pattern, callback, direct=False, meta=meta))

    def _claim(self, pattern: str) -> Optional[Subscription]:
        """The first subscription named at connect (``Bus(subscribe=...)``)
        for ``pattern`` that nobody took yet; None if there is none."""
        with self._lock:
            if self._closed:
                raise errors.Unavailable("the bus connection is closed")
            waiting = self._unclaimed.get(pattern)
            if not waiting:
                return None
            sub = waiting.pop(0)
            if not waiting:
                del self._unclaimed[pattern]
            return sub

    def _subscribe(self, sub: Subscription, since: Optional[int] = None) -> Subscription:
        message = sub._request()
        if since:
            message["since"] = since
        self._call(message, on_reply=self._route_sub(sub))
        return sub

    def _route_sub(self, sub: Subscription) -> Callable[[dict], None]:
        # Runs on the reader thread before the next frame is read, so the
        # subscription's first event is already routed.
        def on_reply(reply: dict) -> None:
            if not reply.get("ok"):
                return
            with self._lock:
                if not sub.closed:
                    sub._server_id = int(reply["sub"])
                    self._routes[sub._server_id] = sub
                    if sub not in self._subscriptions:
                        self._subscriptions.append(sub)
                    return
            self._undo_sub(reply)  # closed while its (re)subscription was under way

        return on_reply

    def _undo_sub(self, reply: dict) -> None:
        """Ends a server subscription nobody holds (its caller gave up)."""
        if reply.get("ok") and "sub" in reply:
            try:
                self._send(self._encode({"op": "unsub", "sub": reply["sub"]}))
            except errors.Unavailable:
                pass

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub.closed:
                return
            sub.closed = True
            if sub in self._subscriptions:
                self._subscriptions.remove(sub)
            server_id = sub._server_id
            if server_id is not None:
                self._routes.pop(server_id, None)
        if server_id is not None and self._connected and not self._closed:
            try:
                self._send(self._encode({"op": "unsub", "sub": server_id}))
            except errors.Unavailable:
                pass

    def watch(self, pattern: str) -> "Watch":
        """A live, read-only dict of every key matching ``pattern``, kept
        current by push: reading it makes no round trip. The first watch (or
        subscribe) of a pattern named in ``Bus(subscribe=...)`` mirrors the
        subscription made at connect, with what came meanwhile at once."""
        from .watch import Watch

        return Watch(self, pattern)

    # -- reader -----------------------------------------------------------

    def _read_loop(self) -> None:
        while not self._closed:
            try:
                opcode, data = self._ws.recv_data()
                if opcode == OPCODE_CLOSE:
                    raise _ClosedByServer(data)
                message = self._codec.decode(data)
            except Exception as e:
                if self._closed:
                    return
                self._lost(e)
                if not self._reconnect_loop():
                    return
                continue
            self._route(message)

    def _route(self, message: dict) -> None:
        rid = message.get("id")
        if rid is not None:
            with self._lock:
                waiter = self._pending.pop(rid, None)
                if waiter is not None and not waiter.abandoned:
                    waiter.claimed = True
            if waiter is not None and waiter.abandoned:
                self._undo_sub(message)
            elif waiter is not None:
                if waiter.on_reply is not None:
                    waiter.on_reply(message)
                waiter.reply = message
                waiter.done.set()
            return
        ev = message.get("ev")
        if ev == "error":
            log.warning("ipcbus: server reported %s", message.get("error"))
            return
        if ev not in ("val", "del", "synced"):
            return
        with self._lock:
            sub = self._routes.get(message.get("sub"))
        if sub is None or sub.closed:
            return
        meta = meta_from_wire(message.get("meta")) if ev == "val" else None
        sub._deliver(Event(ev, message.get("key"), message.get("value"), message.get("rev") or 0, meta))

    def _lost(self, why: Exception) -> None:
        log.warning("ipcbus: connection to %s lost: %s", self.url, why)
        with self._lock:
            self._connected = False
            self._routes.clear()
            for sub in self._subscriptions:
                sub._server_id = None  # ids of the old session mean nothing now
        self._state.set(state.RECONNECTING if self.reconnect else state.CLOSED, "connection lost: %s" % why)
        self._fail_pending(_Lost(why))

    def _fail_pending(self, reply: Any) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for waiter in pending.values():
            waiter.reply = reply
            waiter.done.set()

    def _reconnect_loop(self) -> bool:
        if not self.reconnect:
            with self._lock:
                self._closed = True
                self._ready.notify_all()
            self._dispatcher.stop()
            return False
        delay = BACKOFF_FIRST
        refused = None
        while not self._closing.wait(delay):
            try:
                ws, hello = self._open()
                self._reassert(ws, same_store=hello.get("store") == self.store)
            except (errors.Unauthorized, errors.Forbidden) as e:
                if str(e) != refused:  # once, not at every attempt
                    log.warning("ipcbus: reconnecting: %s (will keep trying)", e)
                    refused = str(e)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            except errors.Unavailable:
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            if self._closed:  # close() ran while we were connecting
                ws.close()
                return False
            self._ws = ws
            self._adopt(hello)
            log.info("ipcbus: reconnected to %s", self.url)
            self._resubscribe()
            with self._lock:
                self._generation += 1
                self._connected = True
                self._ready.notify_all()
            self._state.set(state.OPEN, "reconnected to %s" % self.url)
            return True
        return False

    def _reassert(self, ws: "websocket.WebSocket", same_store: bool) -> None:
        """Sets this Bus's ephemeral keys again on the new connection ``ws``,
        before anything else uses it. Drops ``ws`` if that fails."""

        def exchange(messages: List[dict]) -> List[dict]:
            replies: List[dict] = []
            for start in range(0, len(messages), REASSERT_BATCH):
                replies.extend(self._exchange(ws, messages[start:start + REASSERT_BATCH]))
            return replies

        try:
            ws.settimeout(self.timeout)
            self._ephemeral.reassert(exchange, same_store)
            ws.settimeout(SOCKET_TIMEOUT)
        except Exception as e:
            ws.shutdown()
            raise errors.Unavailable("connection lost while setting ephemeral keys again: %s" % e) from e

    def _exchange(
        self,
        ws: "websocket.WebSocket",
        messages: List[dict],
        on_reply: Optional[Callable[[dict, dict], None]] = None,
        on_other: Optional[Callable[[dict], None]] = None,
    ) -> List[dict]:
        """Sends requests on a connection nobody else uses yet, and reads
        their replies; ``on_reply(message, reply)`` runs as each comes, and
        ``on_other`` gets what else arrives (the events of subscriptions
        being made; else there is none: it has no subscriptions)."""
        sent: Dict[int, dict] = {}
        for message in messages:
            message["id"] = next(self._ids)
            sent[message["id"]] = message
            self._send_on(ws, message)
        replies: Dict[int, dict] = {}
        while len(replies) < len(sent):
            opcode, data = ws.recv_data()
            if opcode == OPCODE_CLOSE:
                raise ConnectionError("closed by the server")
            reply = self._codec.decode(data)
            rid = reply.get("id")
            if rid in sent and rid not in replies:
                replies[rid] = reply
                if on_reply is not None:
                    on_reply(sent[rid], reply)
            elif rid is None and on_other is not None:
                on_other(reply)
        return [replies[m["id"]] for m in messages]

    def _resubscribe(self) -> None:
        # On the reader thread: send the `sub`s and let their replies route
        # themselves; waiting here would block the replies.
        # Every subscription replays in full: a `since` is only safe when
        # every lower rev is known to have arrived, and replay and live order
        # across keys make that unknowable; nor does `since` report deletions
        # whose tombstones are gone. The subscription filters the replay.
        with self._lock:
            subs = list(self._subscriptions)
        for sub in subs:
            message = sub._request()
            message["id"] = next(self._ids)
            if sub._direct:
                sub._callback(Event("resync", None, None, 0))
            else:
                sub._start_resync(self.store_changed)
            with self._lock:
                self._pending[message["id"]] = _Waiter(self._route_sub(sub))
            try:
                self._send(self._encode(message))
            except errors.Unavailable:
                return  # the read loop notices and reconnects again


def _named_patterns(subscribe: Any) -> List[str]:
    """``Bus(subscribe=...)``, checked: a list or tuple of patterns."""
    if not isinstance(subscribe, (list, tuple)):
        raise TypeError("subscribe is a list of patterns, as ['weather.>'], not %r" % (subscribe,))
    for pattern in subscribe:
        if not isinstance(pattern, str):
            raise TypeError("subscribe: a pattern is a string, not %r" % (pattern,))
    return list(subscribe)


def _own_subs(url: str) -> List[str]:
    """The ``sub`` parameters ``url`` has of its own, as the server reads
    them: each ``&``-separated pair of the query whose name, up to its first
    ``=``, is exactly ``sub``. A bare ``sub`` (no ``=``) counts too, as in
    the other clients. A string check: ``urllib.parse`` is not needed."""
    query = url.partition("#")[0].partition("?")[2]
    return [pair for pair in query.split("&") if pair.partition("=")[0] == "sub"]


def _check_url(url: str) -> None:
    """A URL with ``sub`` parameters of its own is refused before anything
    is sent: the subscriptions it would make are not the Bus's, which could
    neither route, count nor make them again."""
    own = _own_subs(url)
    if own:
        raise ValueError("the URL has its own sub= parameters (%s); name subscriptions with "
                         "Bus(subscribe=[...]) instead" % "&".join(own))


def _with_subs(url: str, patterns: List[str]) -> str:
    """``url`` with a ``sub`` parameter per pattern after its own query."""
    from urllib.parse import quote  # as the token lookup: not at import time

    base, hash_, fragment = url.partition("#")
    query = "&".join("sub=" + quote(p, safe="") for p in patterns)
    sep = "" if base.endswith(("?", "&")) else "&" if "?" in base else "?"
    return base + sep + query + hash_ + fragment


def _refused_list(url: str, error: dict) -> errors.ServerError:
    return errors.from_wire({"code": error.get("code"), "msg": "%s refused the subscriptions named at connect "
                             "(the subscribe option): %s" % (url, error.get("msg", ""))})


def _refused_subs(url: str, e: Exception) -> errors.ServerError:
    """The error for an upgrade refused for its ``sub`` parameters: 400
    ``bad_pattern`` (or ``bad_request``), 429 ``limit``, as the JSON body
    says (websocket-client before 1.x keeps no body: then by the status)."""
    import json

    status = getattr(e, "status_code", None)
    error = {"code": "bad_pattern" if status == 400 else "limit", "msg": "HTTP status %s" % status}
    try:
        body = json.loads(getattr(e, "resp_body", None) or b"")["error"]
        error = {"code": str(body["code"]), "msg": str(body.get("msg", ""))}
    except Exception:
        pass
    return _refused_list(url, error)
