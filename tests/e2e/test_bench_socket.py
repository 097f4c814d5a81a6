"""The bench's lean socket.io client against a real python-socketio server: it connects
with its auth, gets events in order, keeps the heartbeat, and reports a refusal's reason.
The bench's figures are only as true as this client's reading of the protocol."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import socketio
from aiohttp import web

from loadtests.listening_socket import ListeningSocket, SocketRefused

TIMEOUT = 10.0


@pytest.fixture
async def server() -> AsyncIterator[tuple[socketio.AsyncServer, str]]:
    # A heartbeat every 0.2 s: a client that does not answer pings is dropped within 0.4 s.
    sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=0.2, ping_timeout=0.2)

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> bool:
        if not isinstance(auth, dict) or auth.get("token") != "good":
            raise socketio.exceptions.ConnectionRefusedError("bad token")
        await sio.enter_room(sid, "room")
        return True

    app = web.Application()
    sio.attach(app)
    async with serving(app) as url:
        yield sio, url


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """``app`` on a free port of 127.0.0.1, for the block; its URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_events_arrive_in_order_and_the_heartbeat_is_kept(
    server: tuple[socketio.AsyncServer, str],
) -> None:
    sio, url = server
    got: list[Any] = []
    all_in = asyncio.Event()

    def on_message(data: Any) -> None:
        got.append(data)
        if len(got) == 20:
            all_in.set()

    async with aiohttp.ClientSession() as session:
        socket = ListeningSocket(session, url, {"token": "good"}, {"message:new": on_message})
        await socket.connect(timeout=TIMEOUT)
        assert socket.sid is not None
        # Several ping intervals pass: the server would have dropped a silent client.
        for _ in range(5):
            socket.ponged.clear()
            await asyncio.wait_for(socket.ponged.wait(), TIMEOUT)
        for n in range(20):
            if n == 10:  # an event with no handler is skipped, not handed to another
                await sio.emit("other:event", {"n": -1}, room="room")
            await sio.emit("message:new", {"n": n}, room="room")
        await asyncio.wait_for(all_in.wait(), TIMEOUT)
        assert got == [{"n": n} for n in range(20)]
        assert not socket.closed.is_set()
        await socket.disconnect()
        assert socket.closed.is_set()


async def test_a_refused_connect_says_why(server: tuple[socketio.AsyncServer, str]) -> None:
    _, url = server
    async with aiohttp.ClientSession() as session:
        socket = ListeningSocket(session, url, {"token": "bad"}, {})
        with pytest.raises(SocketRefused, match="bad token"):
            await socket.connect(timeout=TIMEOUT)
        await socket.disconnect()


async def test_a_websocket_closed_before_connecting_is_a_refusal() -> None:
    async def close_at_once(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close(code=1008, message=b"full")
        return ws

    app = web.Application()
    app.router.add_get("/socket.io/", close_at_once)
    async with serving(app) as url, aiohttp.ClientSession() as session:
        socket = ListeningSocket(session, url, {"token": "t"}, {})
        with pytest.raises(SocketRefused, match=r"CLOSE.*1008"):
            await socket.connect(timeout=TIMEOUT)
        await socket.disconnect()
