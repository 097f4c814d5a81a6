"""A bare socket.io server node for adapter tests: a real AsyncServer behind hypercorn on a
free port, whose clients name their user in their auth and join that user's room (as
``ChatNamespace`` does after checking a token), so events addressed to users reach them.
A client's auth may also name extra ``rooms`` to join; ``disconnected`` gets the id of
each socket that leaves."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import socketio
from hypercorn.asyncio import serve
from hypercorn.config import Config

from chat_adapters.socketio.notifier import user_room
from tests.support.clients import Socket
from tests.support.processes import free_port

WAIT = 10.0


@dataclass
class SocketIONode:
    """One socket.io server; ``connect(user)`` opens a real websocket client as ``user``."""

    manager: socketio.AsyncManager
    port: int = field(default_factory=free_port)
    sio: socketio.AsyncServer = field(init=False)
    sockets: list[Socket] = field(default_factory=list)
    disconnected: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> SocketIONode:
        self.sio = socketio.AsyncServer(
            async_mode="asgi", client_manager=self.manager, logger=False, engineio_logger=False
        )

        @self.sio.event
        async def connect(sid: str, environ: dict[str, Any], auth: dict[str, Any]) -> None:
            for room in [user_room(auth["token"]), *auth.get("rooms", [])]:
                await self.sio.enter_room(sid, room)

        @self.sio.event
        async def disconnect(sid: str, *_: Any) -> None:
            self.disconnected.put_nowait(sid)  # the manager forgets the socket right after

        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.accesslog = None
        config.graceful_timeout = 1

        async def shutdown() -> None:
            await self._stop.wait()
            await self.sio.shutdown()  # stops engine.io's service task, which serve() awaits
            with contextlib.suppress(Exception):
                await self.sio.eio.disconnect()

        self._task = asyncio.create_task(
            serve(socketio.ASGIApp(self.sio), config, shutdown_trigger=shutdown)
        )
        async with asyncio.timeout(WAIT):  # until the port accepts connections
            while True:
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                    writer.close()
                    return self
                await asyncio.sleep(0.02)  # polling the port, not a guess

    async def connect(self, user: str) -> Socket:
        socket = await Socket(self.url, user).connect()
        self.sockets.append(socket)
        return socket

    async def close(self) -> None:
        for socket in self.sockets:
            with contextlib.suppress(Exception):
                await socket.disconnect()
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, WAIT)
