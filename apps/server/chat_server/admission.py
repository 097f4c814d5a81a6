"""Admission of engine.io sessions that have not logged in yet.

engine.io opens a session on the first polling GET (or websocket), before the socket.io
connect packet where the token is checked: each costs memory until it times out (about a
minute). Anyone could open tens of thousands. Here, in front of the socket.io app:

- a handshake (a request under /socket.io/ without ``sid=``) is refused with 429 when its
  address already has ``CHAT_SOCKET_PENDING_PER_ADDRESS`` sessions pending, and with 503
  when the node has ``CHAT_SOCKET_PENDING_MAX``;
- a session is pending from its handshake until a connect packet is accepted (the
  socket.io namespace "/" knows it), or it closes; one still pending after
  ``CHAT_SOCKET_PENDING_SECONDS`` is closed.

The engine.io ``connect``, ``message`` and ``disconnect`` handlers python-socketio
installs are wrapped (``eio.on``), so a handshake's reservation is tied to the session
engine.io creates for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import orjson
import socketio
from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope
from prometheus_client import Counter, Gauge

from chat_server.errors import error_body

log = logging.getLogger("chat.admission")

SOCKETIO_PATH = "/socket.io/"
NAMESPACE = "/"

SESSIONS_PENDING = Gauge(
    "chat_socket_sessions_pending",
    "engine.io sessions (and handshakes under way) not yet socket.io-connected on this node",
)
HANDSHAKES_REFUSED = Counter(
    "chat_socket_handshakes_refused_total",
    "engine.io handshakes refused: per_address (429) or node_full (503)",
    ["reason"],
)
SESSIONS_EXPIRED = Counter(
    "chat_socket_sessions_expired_total",
    "engine.io sessions closed for sending no accepted connect packet in time",
)


@dataclass(eq=False)
class Pending:
    """One handshake, then the session it opened, until it connects or goes."""

    address: str
    started: float
    task: asyncio.Task[Any] | None  # a websocket handshake's handler, ended on expiry
    sid: str | None = None
    released: bool = field(default=False)


# The handshake being served in this task: engine.io runs its connect handler in it.
_handshake: ContextVar[Pending | None] = ContextVar("chat_handshake", default=None)


def address_of(scope: Scope, trusted_proxy_hops: int) -> str:
    """The client's address, as ``chat_server.limits.client_address`` reads it: the peer,
    or behind N trusted proxies the N-th X-Forwarded-For entry from the right."""
    if trusted_proxy_hops:
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers", ()))  # type: ignore[call-overload]
        values = [v.decode("latin-1") for k, v in headers if k == b"x-forwarded-for"]
        forwarded = [a.strip() for a in ",".join(values).split(",") if a.strip()]
        if len(forwarded) >= trusted_proxy_hops:
            return forwarded[-trusted_proxy_hops]
    client: tuple[str, int] | None = scope.get("client")  # type: ignore[assignment]
    return str(client[0]) if client else "unknown"


def is_handshake(scope: Scope) -> bool:
    if scope["type"] not in ("http", "websocket"):
        return False
    if not str(scope.get("path", "")).startswith(SOCKETIO_PATH):
        return False
    query: bytes = scope.get("query_string", b"")
    return not any(part.startswith(b"sid=") for part in query.split(b"&"))


class SessionAdmission:
    """ASGI middleware in front of the socket.io app, and the pending sessions' ledger."""

    def __init__(
        self,
        app: ASGIFramework,
        sio: socketio.AsyncServer,
        *,
        per_address: int,
        max_pending: int,
        pending_seconds: float,
        trusted_proxy_hops: int,
    ) -> None:
        self.app = app
        self._sio = sio
        self._per_address = per_address
        self._max_pending = max_pending
        self._pending_seconds = pending_seconds
        self._hops = trusted_proxy_hops
        self._by_address: dict[str, int] = {}
        self._by_sid: dict[str, Pending] = {}
        self._all: set[Pending] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._wrap_engineio_handlers()
        SESSIONS_PENDING.set_function(lambda: len(self._all))

    # --- ASGI -------------------------------------------------------------------------
    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if not is_handshake(scope):
            await self.app(scope, receive, send)
            return
        address = address_of(scope, self._hops)
        if self._by_address.get(address, 0) >= self._per_address:
            await self._refuse(scope, receive, send, "per_address")
            return
        if len(self._all) >= self._max_pending:
            await self._refuse(scope, receive, send, "node_full")
            return
        loop = asyncio.get_running_loop()
        task = asyncio.current_task() if scope["type"] == "websocket" else None
        pending = Pending(address, loop.time(), task)
        self._hold(pending)
        self._start_sweeper()
        token = _handshake.set(pending)
        try:
            await self.app(scope, receive, send)
        finally:
            _handshake.reset(token)
            # A polling handshake's session outlives its request; anything else ends here.
            if pending.sid is None or scope["type"] == "websocket":
                self._release(pending)

    async def _refuse(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable, reason: str
    ) -> None:
        HANDSHAKES_REFUSED.labels(reason).inc()
        if reason == "per_address":
            status, code = 429, "rate_limited"
            message = "too many sessions from this address are waiting to connect"
        else:
            status, code = 503, "unavailable"
            message = "too many sessions are waiting to connect; try again shortly"
        body = orjson.dumps(error_body(code, message))
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(math.ceil(self._pending_seconds)).encode()),
        ]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        await receive()  # websocket.connect
        extensions: dict[str, Any] = scope.get("extensions") or {}  # type: ignore[assignment]
        if "websocket.http.response" in extensions:
            await send(
                {"type": "websocket.http.response.start", "status": status, "headers": headers}
            )
            await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
        else:
            await send({"type": "websocket.close", "code": 1013, "reason": code})

    # --- the ledger -------------------------------------------------------------------
    def _hold(self, pending: Pending) -> None:
        self._all.add(pending)
        self._by_address[pending.address] = self._by_address.get(pending.address, 0) + 1

    def _release(self, pending: Pending) -> None:
        if pending.released:
            return
        pending.released = True
        self._all.discard(pending)
        if pending.sid is not None and self._by_sid.get(pending.sid) is pending:
            del self._by_sid[pending.sid]
        left = self._by_address.get(pending.address, 0) - 1
        if left > 0:
            self._by_address[pending.address] = left
        else:
            self._by_address.pop(pending.address, None)

    def __len__(self) -> int:
        return len(self._all)

    # --- engine.io's handlers -----------------------------------------------------------
    def _wrap_engineio_handlers(self) -> None:
        eio = self._sio.eio
        on_connect = eio.handlers["connect"]
        on_message = eio.handlers["message"]
        on_disconnect = eio.handlers["disconnect"]

        async def connect(eio_sid: str, environ: dict[str, Any]) -> Any:
            pending = _handshake.get()
            if pending is not None:
                pending.sid = eio_sid
                self._by_sid[eio_sid] = pending
            accepted = await _call(on_connect, eio_sid, environ)
            if accepted is not None and accepted is not True and pending is not None:
                self._release(pending)  # engine.io drops the session it just made
            return accepted

        async def message(eio_sid: str, data: Any) -> Any:
            result = await _call(on_message, eio_sid, data)
            pending = self._by_sid.get(eio_sid)
            if pending is not None and self._sio.manager.sid_from_eio_sid(eio_sid, NAMESPACE):
                self._release(pending)  # a connect packet was accepted: logged in
            return result

        async def disconnect(eio_sid: str, *args: Any) -> Any:
            pending = self._by_sid.get(eio_sid)
            if pending is not None:
                self._release(pending)
            return await _call(on_disconnect, eio_sid, *args)

        eio.on("connect", connect)
        eio.on("message", message)
        eio.on("disconnect", disconnect)

    # --- expiry -------------------------------------------------------------------------
    def _start_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        interval = min(1.0, self._pending_seconds / 4)
        loop = asyncio.get_running_loop()
        while self._all:
            await asyncio.sleep(interval)
            deadline = loop.time() - self._pending_seconds
            for pending in [p for p in self._all if p.started < deadline and p.sid is not None]:
                await self._expire(pending)

    async def _expire(self, pending: Pending) -> None:
        self._release(pending)
        SESSIONS_EXPIRED.inc()
        socket = self._sio.eio.sockets.get(pending.sid)
        if socket is not None and not socket.closed:
            with contextlib.suppress(Exception):  # already going: nothing left to close
                # A CLOSE packet: a real client stops; the session is gone either way.
                await socket.close(wait=False, abort=False)
        if pending.task is not None and not pending.task.done():
            pending.task.cancel()  # a websocket that does not leave is ended


async def _call(handler: Callable[..., Any], *args: Any) -> Any:
    result = handler(*args)
    if isinstance(result, Awaitable):
        return await result
    return result
