"""A receive-only socket.io client for the bench's generator: one aiohttp websocket, no more.

The generator shares the 2 cores with the targets it measures, so what it spends reading
deliveries is CPU the targets do not get. python-socketio's AsyncClient cost the generator
about 18% of its samples in the cluster bench: per frame, engine.io's read loop wraps the
receive in ``wait_for`` (a task), and each event is dispatched as a background task. This
client reads each frame once, in the socket's only task, and calls a plain function.

It speaks just what the bench needs of Engine.IO 4 / Socket.IO 5 over websocket: the open
packet, a connect with an ``auth`` payload to the default namespace, answering pings, and
events without acks or binary parts. Everything else a server may send is ignored. The
Locust harness and the tests keep python-socketio's real client: this one is a measuring
instrument, not the project's reference client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson

# Engine.IO packet types (first character of a frame), then Socket.IO's (the second).
EIO_OPEN, EIO_CLOSE, EIO_PING, EIO_PONG, EIO_MESSAGE = "0", "1", "2", "3", "4"
SIO_CONNECT, SIO_EVENT, SIO_CONNECT_ERROR = "0", "2", "4"

EventHandler = Callable[[Any], None]


class SocketRefused(ConnectionError):
    """The server refused the socket.io connect, or never completed it."""


class ListeningSocket:
    """One member's live socket: connect, then ``handlers[event](data)`` for every event."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        auth: Mapping[str, Any],
        handlers: Mapping[str, EventHandler],
    ) -> None:
        self._session, self._auth, self._handlers = session, dict(auth), dict(handlers)
        base = url.rstrip("/").replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        self._url = f"{base}/socket.io/?EIO=4&transport=websocket"
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self.sid: str | None = None
        self.ponged = asyncio.Event()  # set at each answered ping: the heartbeat is kept
        self.closed = asyncio.Event()

    async def connect(self, timeout: float = 15.0) -> None:
        """Open the websocket and join the default namespace; raise ``SocketRefused``."""
        async with asyncio.timeout(timeout):
            self._ws = await self._session.ws_connect(self._url, autoping=True)
            opened = await self._receive_text()
            if not opened.startswith(EIO_OPEN):
                raise SocketRefused(f"expected an Engine.IO open packet, got {opened[:80]!r}")
            await self._ws.send_str(EIO_MESSAGE + SIO_CONNECT + orjson.dumps(self._auth).decode())
            while True:  # a ping may come before the connect's answer
                frame = await self._receive_text()
                if frame == EIO_PING:
                    await self._pong()
                elif frame.startswith(EIO_MESSAGE + SIO_CONNECT):
                    self.sid = orjson.loads(frame[2:] or b"{}").get("sid")
                    break
                elif frame.startswith(EIO_MESSAGE + SIO_CONNECT_ERROR):
                    raise SocketRefused(f"connect refused: {frame[2:]}")
        self._reader = asyncio.create_task(self._read())

    async def _receive_text(self) -> str:
        """The next text frame of the handshake; ``SocketRefused`` if the server closed."""
        assert self._ws is not None
        message = await self._ws.receive()
        if message.type is not aiohttp.WSMsgType.TEXT:
            reason = self._ws.close_code, message.extra or message.data
            raise SocketRefused(f"websocket {message.type.name} before connecting: {reason}")
        text: str = message.data
        return text

    async def disconnect(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        self.closed.set()

    async def _pong(self) -> None:
        assert self._ws is not None
        await self._ws.send_str(EIO_PONG)
        self.ponged.set()

    async def _read(self) -> None:
        assert self._ws is not None
        event_prefix = EIO_MESSAGE + SIO_EVENT
        try:
            async for message in self._ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    continue  # binary parts, websocket pings and closes: none carry events
                frame: str = message.data
                if frame.startswith(event_prefix):
                    # "42" then ["event", data]: an ack id would sit between them; we ask
                    # for none, so there is none.
                    event = orjson.loads(frame[2:])
                    handler = self._handlers.get(event[0])
                    if handler is not None:
                        handler(event[1] if len(event) > 1 else None)
                elif frame == EIO_PING:
                    await self._pong()
                elif frame.startswith(EIO_CLOSE):
                    break
        finally:
            self.closed.set()
