"""The reference: bare python-socketio + a minimal ASGI app on hypercorn, state in dicts.

It answers the REST calls the load tools use (register, login, create room, add member,
send message) with the contract's JSON shapes, and emits ``message:new`` straight to the
members' user rooms: no broker, no database, no password hashing, no validation layer.
That is the ceiling of our stack (hypercorn + python-socketio + uvloop on this machine);
the bench reports the real service as a ratio of it, measured in the same run.

    python -m loadtests.reference_server --port 8100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import socketio
from hypercorn.asyncio import serve
from hypercorn.config import Config

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Answer = tuple[int, dict[str, Any]]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _error(status: int, code: str, message: str) -> Answer:
    return status, {"error": {"code": code, "message": message}}


@dataclass
class Room:
    """A group room: its members' ids and its last ``seq``."""

    id: str
    name: str
    created_at: str
    members: dict[str, str] = field(default_factory=dict)  # user id -> role
    last_seq: int = 0

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": "group",
            "created_at": self.created_at,
            "last_seq": self.last_seq,
        }


class ReferenceChat:
    """In-memory users, tokens and rooms behind the REST subset; fan-out through ``sio``."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self.sio = sio
        self.users: dict[str, dict[str, Any]] = {}  # id -> user view
        self.by_name: dict[str, tuple[str, str]] = {}  # username -> (id, password)
        self.tokens: dict[str, str] = {}  # token -> user id
        self.rooms: dict[str, Room] = {}
        # One consumer emits in acceptance order, like a single worker would: the per-room
        # order of ``message:new`` then follows ``seq`` without any locking.
        self.outbox: asyncio.Queue[tuple[list[str], dict[str, Any]]] = asyncio.Queue()

    async def fan_out(self) -> None:
        while True:
            rooms, message = await self.outbox.get()
            await self.sio.emit("message:new", message, room=rooms)

    def register(self, body: dict[str, Any]) -> Answer:
        username = str(body.get("username", "")).lower()
        if not username or len(str(body.get("password", ""))) < 8:
            return _error(422, "validation_error", "username and password are required")
        if username in self.by_name:
            return _error(409, "conflict", "username taken")
        user = {
            "id": str(uuid.uuid4()),
            "username": username,
            "display_name": body.get("display_name") or username,
            "created_at": _now(),
        }
        self.users[user["id"]] = user
        self.by_name[username] = (user["id"], str(body["password"]))
        return 201, {"user": user}

    def login(self, body: dict[str, Any]) -> Answer:
        found = self.by_name.get(str(body.get("username", "")).lower())
        if found is None or found[1] != body.get("password"):
            return _error(401, "unauthorized", "bad credentials")
        token = secrets.token_urlsafe(24)
        self.tokens[token] = found[0]
        return 200, {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": 43200,
            "user": self.users[found[0]],
        }

    def create_room(self, user_id: str, body: dict[str, Any]) -> Answer:
        room = Room(str(uuid.uuid4()), str(body.get("name") or "room"), _now())
        room.members[user_id] = "owner"
        for member_id in body.get("member_ids") or []:
            if member_id not in self.users:
                return _error(422, "validation_error", f"unknown user {member_id}")
            room.members.setdefault(member_id, "member")
        self.rooms[room.id] = room
        return 201, {"room": room.view()}

    def add_member(self, user_id: str, room: Room, body: dict[str, Any]) -> Answer:
        member_id = str(body.get("user_id", ""))
        if member_id not in self.users:
            return _error(404, "not_found", "no such user")
        status = 200 if member_id in room.members else 201
        room.members.setdefault(member_id, "member")
        member = {"user_id": member_id, "role": room.members[member_id], "joined_at": _now()}
        return status, {"member": member}

    def send_message(self, user_id: str, room: Room, body: dict[str, Any]) -> Answer:
        text = str(body.get("body", "")).strip()
        if not 1 <= len(text) <= 4000:
            return _error(422, "validation_error", "body: must be 1..4000 characters")
        room.last_seq += 1
        message = {
            "id": str(uuid.uuid4()),
            "room_id": room.id,
            "seq": room.last_seq,
            "sender_id": user_id,
            "body": text,
            "client_msg_id": body.get("client_msg_id"),
            "created_at": _now(),
            "edited_at": None,
            "deleted": False,
        }
        self.outbox.put_nowait(([f"user:{uid}" for uid in room.members], message))
        return 202, {"message": {**message, "seq": None, "status": "accepted"}}

    def route(self, method: str, path: str, token: str | None, body: dict[str, Any]) -> Answer:
        parts = path.strip("/").split("/")
        if method == "GET" and path in ("/healthz", "/readyz"):
            return 200, {"status": "ok"}
        if parts[:2] != ["api", "v1"] or method != "POST":
            return _error(404, "not_found", "no such path")
        rest = parts[2:]
        if rest == ["auth", "register"]:
            return self.register(body)
        if rest == ["auth", "login"]:
            return self.login(body)
        user_id = self.tokens.get(token or "")
        if user_id is None:
            return _error(401, "unauthorized", "no or bad token")
        if rest == ["rooms"]:
            return self.create_room(user_id, body)
        if len(rest) == 3 and rest[0] == "rooms":
            room = self.rooms.get(rest[1])
            if room is None or user_id not in room.members:
                return _error(404, "not_found", "no such room")
            if rest[2] == "members":
                return self.add_member(user_id, room, body)
            if rest[2] == "messages":
                return self.send_message(user_id, room, body)
        return _error(404, "not_found", "no such path")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # socketio.ASGIApp hands lifespan to us; nothing to do
            while (event := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        chunks = []
        while True:
            event = await receive()
            chunks.append(event.get("body", b""))
            if not event.get("more_body"):
                break
        raw = b"".join(chunks)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            status, answer = _error(400, "validation_error", "malformed JSON")
        else:
            headers = dict(scope["headers"])
            auth = headers.get(b"authorization", b"").decode()
            token = auth[7:] if auth.startswith("Bearer ") else None
            status, answer = self.route(scope["method"], scope["path"], token, body)
        payload = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def build(sio: socketio.AsyncServer) -> tuple[ReferenceChat, socketio.ASGIApp]:
    chat = ReferenceChat(sio)

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        user_id = chat.tokens.get(token or "")
        if user_id is None:
            raise socketio.exceptions.ConnectionRefusedError("unauthorized")
        await sio.enter_room(sid, f"user:{user_id}")

    return chat, socketio.ASGIApp(sio, other_asgi_app=chat)


async def run(host: str, port: int) -> None:
    sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*")
    chat, app = build(sio)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    fan_out = asyncio.create_task(chat.fan_out())

    async def shutdown_trigger() -> None:
        await stop.wait()
        # hypercorn waits for every open connection (hypercorn#308): close sockets ourselves.
        # Now and then a connection closing at that very moment still holds it for the
        # whole graceful period; nothing here needs flushing, so do not wait for it.
        loop.call_later(3.0, os._exit, 0)
        await sio.shutdown()
        with contextlib.suppress(Exception):
            await sio.eio.disconnect()

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.graceful_timeout = 5
    config.websocket_ping_interval = None
    await serve(app, config, shutdown_trigger=shutdown_trigger)
    fan_out.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - no uvloop on Windows
        asyncio.run(run(args.host, args.port))
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run(args.host, args.port))


if __name__ == "__main__":
    main()
