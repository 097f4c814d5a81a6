"""The seed's socket events, on our namespace "/" (the seed's too).

A socket that connects without our access token is, with seed compat on, a seed socket:
it may only ``joinroom``, ``leaveroom`` and ``ping``, none of our events. ``joinroom``
with a valid seed token puts it in the socket.io room of the token's user (``user:<id>``,
where every event for that user goes, see the notifier); from then on what reaches it
is translated, at the one place engine.io sends a packet (``eio.send_packet``):

- ``message:new`` of a room it joined becomes the seed's ``chat``, whose payload is a
  JSON string ``{"content","timestamp","clientId","room":{"roomId"}}``, ms timestamp;
- ``seed:roomjoin`` / ``seed:roomleave`` of a room it joined become ``roomjoin`` /
  ``roomleave``, a JSON string ``{"clientId","room":{"roomId"}}``;
- the answer to ``ping`` passes; any other event is dropped (a seed client knows none).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import socketio
from engineio import packet as eio_packet
from socketio import packet

from chat_adapters.socketio.notifier import NAMESPACE, user_room
from chat_bootstrap.container import Container
from chat_domain.errors import DomainError
from chat_domain.usecases.messages import MESSAGE_NEW
from chat_domain.usecases.seed_compat import (
    SEED_ROOMJOIN,
    SEED_ROOMLEAVE,
    NameSeedSenders,
    OpenSeedSession,
    SeedGrant,
    SeedRoomPresence,
)
from chat_server.realtime import Ack, ChatNamespace, SocketUseCases, failed, ok

log = logging.getLogger("chat.seed")

# One name a line: tests/docs reads event names from module constants.
JOINROOM = "joinroom"
LEAVEROOM = "leaveroom"
PING = "ping"
CHAT = "chat"
ROOMJOIN = "roomjoin"
ROOMLEAVE = "roomleave"
_EVENT_PREFIX = str(packet.EVENT)  # "/" namespace, no ack id: "2[...]"


class SeedEvent(NamedTuple):
    """An event as a seed socket receives it (tests/docs counts these as emitted events)."""

    name: str
    payload: Any


@dataclass
class SeedSocket:
    """A seed socket's rooms: our room id -> the grant it joined with."""

    sid: str
    rooms: dict[str, SeedGrant] = field(default_factory=dict)
    join_deadline: asyncio.TimerHandle | None = None

    def holds_user(self, user_id: str) -> bool:
        return any(g.user_id == user_id for g in self.rooms.values())


@dataclass(frozen=True)
class SeedUseCases:
    open_session: OpenSeedSession
    presence: SeedRoomPresence
    sender_names: NameSeedSenders
    # A seed socket that joins no room within this many seconds is disconnected: it
    # skipped our login, so the bound on sessions not logged in must not end at connect.
    join_seconds: float

    @classmethod
    def of(cls, container: Container) -> SeedUseCases:
        return cls(
            open_session=container.open_seed_session(),
            presence=container.seed_room_presence(),
            sender_names=container.name_seed_senders(),
            join_seconds=container.settings().socket_pending_seconds,
        )


def seed_json(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def millis(rfc3339: str) -> int:
    return round(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)


def token_of(data: Any) -> Any:
    """The token of a ``joinroom`` / ``leaveroom`` payload: a JSON string ``{"token"}`` (the
    seed's), or the object itself."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return None
    return data.get("token") if isinstance(data, dict) else None


class SeedCompatNamespace(ChatNamespace):
    """Our namespace, plus seed sockets (see the module)."""

    SEED_EVENTS = frozenset({JOINROOM, LEAVEROOM, PING})

    def __init__(self, use_cases: SocketUseCases, seed: SeedUseCases, **kwargs: Any) -> None:
        super().__init__(use_cases, **kwargs)
        self.seed = seed
        self._seed_sockets: dict[str, SeedSocket] = {}  # by engine.io sid
        self._seed_sids: dict[str, str] = {}  # socket.io sid -> engine.io sid
        self._tasks: set[asyncio.Task[None]] = set()

    # --- dispatch -----------------------------------------------------------------------
    async def trigger_event(self, event: str, *args: Any) -> Any:
        if event != "connect" and args:
            socket = self._seed_socket(args[0])
            if socket is not None:
                return await self._seed_event(event, socket, list(args[1:]))
        return await super().trigger_event(event, *args)

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if token is not None:
            await super().on_connect(sid, environ, auth)
            return
        # No access token: a seed client (it knows none). It can do nothing until joinroom.
        eio_sid: str = self.server.manager.eio_sid_from_sid(sid, NAMESPACE)
        socket = SeedSocket(sid)
        self._seed_sockets[eio_sid] = socket
        self._seed_sids[sid] = eio_sid
        socket.join_deadline = asyncio.get_running_loop().call_later(
            self.seed.join_seconds, lambda: self._spawn(self._expire(socket))
        )

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _expire(self, socket: SeedSocket) -> None:
        if not socket.rooms and self._seed_sids.get(socket.sid) is not None:
            log.info("seed socket %s joined no room in time: disconnected", socket.sid)
            await self.disconnect(socket.sid)

    def _seed_socket(self, sid: str) -> SeedSocket | None:
        eio_sid = self._seed_sids.get(sid)
        return None if eio_sid is None else self._seed_sockets.get(eio_sid)

    async def _seed_event(self, event: str, socket: SeedSocket, args: list[Any]) -> Any:
        if event == "disconnect":
            self._seed_sockets.pop(self._seed_sids.pop(socket.sid, ""), None)
            if socket.join_deadline is not None:
                socket.join_deadline.cancel()
            return None
        if event not in self.SEED_EVENTS:
            return self.server.not_handled  # none of our events for a seed socket
        data = args[0] if args else None
        try:
            if event == PING:
                await self.emit(PING, f"pong {_text(data)}", to=socket.sid)
                return None
            if event == JOINROOM:
                return await self._join(socket, data)
            return await self._leave(socket, data)
        except DomainError as exc:  # an ack if the client asked for one; the seed sent none
            return failed(exc.code, exc.message)
        except Exception:
            log.exception("seed event %s failed", event)
            return failed("internal_error", "internal error")

    async def _join(self, socket: SeedSocket, data: Any) -> Ack:
        grant = await self.seed.open_session(token_of(data))
        room = user_room(grant.user_id)
        try:
            await self.enter_room(socket.sid, room)
        except DomainError:
            if not socket.holds_user(grant.user_id):
                await self.leave_room(socket.sid, room)
            raise
        socket.rooms[grant.room_id] = grant
        await self.seed.presence.joined(grant)
        return ok()

    async def _leave(self, socket: SeedSocket, data: Any) -> Ack:
        grant = await self.seed.open_session(token_of(data))
        socket.rooms.pop(grant.room_id, None)
        if not socket.holds_user(grant.user_id):
            await self.leave_room(socket.sid, user_room(grant.user_id))
        # The leaver is told here, the room's other seed sockets through the notifier:
        # through a Redis manager the leaver's copy would arrive after it left the room.
        told = {"clientId": grant.client_id, "room": {"roomId": grant.seed_room_id}}
        await self.emit(ROOMLEAVE, seed_json(told), to=socket.sid)
        await self.seed.presence.left(grant)
        return ok()

    # --- what a seed socket receives -------------------------------------------------------
    def translate_outgoing(self, sio: socketio.AsyncServer) -> None:
        """Wrap ``eio.send_packet`` (engine.io's public send of one packet to one socket, which
        every socket.io emit ends in) so a seed socket's packets are translated."""
        send_packet = sio.eio.send_packet

        async def send(eio_sid: str, pkt: eio_packet.Packet) -> None:
            socket = self._seed_sockets.get(eio_sid)
            if socket is not None:
                translated = await self._translated(socket, pkt)
                if translated is None:
                    return
                pkt = translated
            await send_packet(eio_sid, pkt)

        sio.eio.send_packet = send

    async def _translated(
        self, socket: SeedSocket, pkt: eio_packet.Packet
    ) -> eio_packet.Packet | None:
        data = pkt.data
        if pkt.packet_type != eio_packet.MESSAGE or not isinstance(data, str):
            return pkt
        if not data.startswith(_EVENT_PREFIX + "["):
            return pkt  # connect, disconnect, acks: the socket.io protocol itself
        try:
            event, *args = json.loads(data[1:])
        except ValueError:
            return pkt
        seed_event = await self._seed_form(socket, event, args[0] if args else None)
        if seed_event is None:
            return None
        return eio_packet.Packet(
            eio_packet.MESSAGE, _EVENT_PREFIX + seed_json([seed_event.name, seed_event.payload])
        )

    async def _seed_form(self, socket: SeedSocket, event: str, payload: Any) -> SeedEvent | None:
        if event in (PING, ROOMLEAVE) and isinstance(payload, str):
            # Emitted in the seed's form to this one socket: the ping answer, _leave's.
            return SeedEvent(event, payload)
        if not isinstance(payload, dict):
            return None
        grant = socket.rooms.get(payload.get("room_id", ""))
        if grant is None:
            return None  # not a room this socket joined
        if event == MESSAGE_NEW:
            chat = {
                "content": payload["body"],
                "timestamp": millis(payload["created_at"]),
                "clientId": await self.seed.sender_names(payload["sender_id"]),
                "room": {"roomId": grant.seed_room_id},
            }
            return SeedEvent(CHAT, seed_json(chat))
        told = {"clientId": payload.get("client_id"), "room": {"roomId": grant.seed_room_id}}
        if event == SEED_ROOMJOIN:
            return SeedEvent(ROOMJOIN, seed_json(told))
        if event == SEED_ROOMLEAVE:
            return SeedEvent(ROOMLEAVE, seed_json(told))
        return None


def _text(data: Any) -> str:
    return data if isinstance(data, str) else seed_json(data)


def register_seed_socket_handlers(
    sio: socketio.AsyncServer, container: Container
) -> SeedCompatNamespace:
    """Serve our socket events and the seed's on ``sio`` (instead of ``ChatNamespace``)."""
    namespace = SeedCompatNamespace(SocketUseCases.of(container), SeedUseCases.of(container))
    sio.register_namespace(namespace)
    namespace.translate_outgoing(sio)
    return namespace
