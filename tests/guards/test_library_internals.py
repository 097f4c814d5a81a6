"""Guards on the library internals we touch for speed: one test per touch.

Each library here has an upper bound in pyproject.toml. Raising a bound, run this file
on the new version: a failure names the library and what changed. A changed hash means
upstream rewrote code we mirror or depend on: read the new upstream source, bring our
side (the module named in the message) in line, then record the new hash here.
"""

from __future__ import annotations

import hashlib
import inspect
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite
import engineio
import quart_schema.extension
from quart import Quart
from quart_schema import QuartSchema
from socketio import async_manager, async_pubsub_manager, base_manager

from chat_adapters.sql.sqlite_inline import inline_connector


def source_hash(function: Callable[..., Any]) -> str:
    return hashlib.sha256(textwrap.dedent(inspect.getsource(function)).encode()).hexdigest()[:16]


def assert_unchanged(library: str, function: Callable[..., Any], recorded: str, ours: str) -> None:
    found = source_hash(function)
    assert found == recorded, (
        f"{library} changed {function.__qualname__} (source hash {found}, recorded "
        f"{recorded}): re-read it and bring {ours} in line, then record the new hash"
    )


def test_socketio_basic_disconnect_is_the_one_room_index_mirrors() -> None:
    # RoomIndexedManager.basic_disconnect repeats the stock bookkeeping after the room scan.
    assert_unchanged(
        "python-socketio",
        base_manager.BaseManager.basic_disconnect,
        "badf3313db9ad2e1",
        "chat_adapters/socketio/room_index.py RoomIndexedManager.basic_disconnect",
    )


def test_socketio_emit_is_the_one_the_inline_fan_out_mirrors() -> None:
    # InlineFanOutManager.emit encodes and queues a room emit as the stock emit does.
    assert_unchanged(
        "python-socketio",
        async_manager.AsyncManager.emit,
        "974bad6cde33d1a6",
        "chat_adapters/socketio/fan_out.py InlineFanOutManager.emit",
    )


def test_socketio_pubsub_listener_dispatches_what_the_redis_manager_yields() -> None:
    # SupervisedRedisManager restarts the listener task (_thread) and its _listen yields
    # decoded dicts that _thread dispatches to _handle_emit, which emit_many also calls.
    manager = async_pubsub_manager.AsyncPubSubManager
    assert_unchanged(
        "python-socketio",
        manager._thread,
        "f867805c44ce1a99",
        "chat_adapters/socketio/redis_manager.py SupervisedRedisManager",
    )
    assert list(inspect.signature(manager._handle_emit).parameters) == ["self", "message"], (
        "python-socketio changed AsyncPubSubManager._handle_emit(message): "
        "SupervisedRedisManager.emit_many calls it"
    )


def test_engineio_sends_a_raw_packet_through_its_public_send_packet() -> None:
    parameters = list(inspect.signature(engineio.AsyncServer.send_packet).parameters)
    assert parameters == ["self", "sid", "pkt"], (
        "python-engineio changed AsyncServer.send_packet(sid, pkt): "
        "chat_adapters/socketio/fan_out.py queues frames with it"
    )


def test_aiosqlite_execute_is_the_one_the_inline_connection_replaces() -> None:
    assert_unchanged(
        "aiosqlite",
        aiosqlite.Connection._execute,
        "87a8b35e8d1cbd10",
        "chat_adapters/sql/sqlite_inline.py InlineSqliteConnection._execute",
    )


async def test_aiosqlite_connection_has_the_attributes_the_inline_connection_reads(
    tmp_path: Path,
) -> None:
    connection = await inline_connector(str(tmp_path / "guard.db"))()
    try:
        missing = [a for a in ("_running", "_connection", "_thread") if not hasattr(connection, a)]
        assert not missing, (
            f"aiosqlite's Connection no longer has {missing}: "
            "chat_adapters/sql/sqlite_inline.py reads them"
        )
        cursor = await connection.execute("SELECT 41 + 1")
        assert await cursor.fetchone() == (42,)
    finally:
        await connection.close()
    # Once closed, a call is refused as upstream refuses it, not run on a closed handle.
    try:
        await connection.execute("SELECT 1")
    except ValueError:
        return
    raise AssertionError("aiosqlite: a closed inline connection still ran a statement")


def test_quart_schema_make_response_wrapper_is_the_one_the_app_removes() -> None:
    assert_unchanged(
        "quart-schema",
        quart_schema.extension.wrap_make_response,
        "34f30b7a6411deed",
        "chat_server/app.py (app.make_response = app.make_response.__wrapped__)",
    )
    app = Quart(__name__)
    original = app.make_response
    QuartSchema(app)
    unwrapped = getattr(app.make_response, "__wrapped__", None)
    assert unwrapped == original, (
        "quart-schema no longer wraps Quart.make_response with functools.wraps: "
        "chat_server/app.py unwraps it through __wrapped__"
    )


def test_engineio_exposes_what_the_transport_bounds_use() -> None:
    # chat_server/outbound.py, admission.py and client_packets.py rely on these parts of
    # python-engineio and python-socketio that are public in name but not documented.
    import socketio
    from engineio.async_socket import AsyncSocket

    sio = socketio.AsyncServer(async_mode="asgi")
    problems = [
        f"AsyncServer.{name}"
        for name in ("create_queue", "handlers", "sockets", "send", "on", "ping_timeout")
        if not hasattr(sio.eio, name)
    ]
    problems += [
        f"socketio.AsyncServer.{name}" for name in ("packet_class",) if not hasattr(sio, name)
    ]
    if not hasattr(sio.manager, "sid_from_eio_sid"):
        problems.append("AsyncManager.sid_from_eio_sid")
    for name in ("close", "check_ping_timeout"):
        if not callable(getattr(AsyncSocket, name, None)):
            problems.append(f"engineio AsyncSocket.{name}")
    socket = AsyncSocket(sio.eio, "sid")
    problems += [
        f"engineio AsyncSocket().{name}"
        for name in ("queue", "closed", "closing", "last_ping")
        if not hasattr(socket, name)
    ]
    assert set(sio.eio.handlers) >= {"connect", "message", "disconnect"}, (
        "python-engineio no longer registers the connect/message/disconnect handlers that "
        "chat_server/admission.py and client_packets.py wrap"
    )
    assert not problems, (
        f"python-engineio/python-socketio changed what the transport bounds use: {problems}; "
        "re-read chat_server/outbound.py, admission.py and client_packets.py against them"
    )
