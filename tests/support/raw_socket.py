"""A socket.io client at the frame level: engine.io over a plain TCP websocket (wsproto).

For what the real clients never do: send malformed packets, or stop reading altogether
(a small receive buffer, and nothing read, so the server's writes back up).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

PATH = "/socket.io/?EIO=4&transport=websocket"


class RawSocket:
    """One websocket to ``/socket.io/``: text frames in and out, nothing else."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.frames: deque[str] = deque()
        self._partial = ""
        self.closed = False

    @classmethod
    async def open(cls, url: str, receive_buffer: int | None = None) -> RawSocket:
        """Connect and complete the websocket handshake; engine.io's OPEN is the first frame.
        ``receive_buffer`` shrinks the kernel's receive buffer, for a client that stops
        reading: the server then finds out within a few kilobytes."""
        parts = urlsplit(url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=receive_buffer or 2**16)
        raw = cls(reader, writer)
        raw._write(raw.ws.send(Request(host=parts.netloc, target=PATH)))
        while True:
            events = await raw._events()
            for i, event in enumerate(events):
                if isinstance(event, RejectConnection):
                    raise ConnectionError(f"websocket refused: {event.status_code}")
                if isinstance(event, AcceptConnection):
                    raw._keep(events[i + 1 :])  # the OPEN frame may come in the same read
                    return raw
            if raw.closed:
                raise ConnectionError("the server closed the connection")

    async def login(self, token: str, timeout: float = 10.0) -> dict[str, Any]:
        """engine.io OPEN, then socket.io CONNECT with the token; the CONNECT answer."""
        opened = await self.receive(timeout)
        assert opened.startswith("0{"), opened
        self.send("40" + json.dumps({"token": token}))
        answer = await self.receive(timeout)
        assert answer.startswith("40{"), answer
        connected: dict[str, Any] = json.loads(answer[2:])
        return connected

    def send(self, text: str) -> None:
        self._write(self.ws.send(Message(data=text)))

    async def receive(self, timeout: float = 10.0) -> str:
        """The next text frame (engine.io pings are answered on the way)."""
        async with asyncio.timeout(timeout):
            while True:
                if self.frames:
                    frame = self.frames.popleft()
                    if frame == "2":  # engine.io ping
                        self.send("3")
                        continue
                    return frame
                if self.closed:
                    raise ConnectionError("the server closed the websocket")
                self._keep(await self._events())

    def _keep(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, TextMessage):
                self._partial += event.data
                if event.message_finished:
                    self.frames.append(self._partial)
                    self._partial = ""
            elif isinstance(event, BytesMessage):
                self.frames.append(bytes(event.data).decode())
            elif isinstance(event, Ping):
                self._write(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self.closed = True

    async def _events(self) -> list[Any]:
        data = await self.reader.read(65536)
        self.ws.receive_data(data or None)
        if not data:
            self.closed = True
        return list(self.ws.events())

    def _write(self, data: bytes) -> None:
        self.writer.write(data)

    async def close(self) -> None:
        self.writer.transport.abort()
