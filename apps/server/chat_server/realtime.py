"""socket.io events: authenticate the connect packet, then map client events to use cases.

Every client event answers through its acknowledgement, ``{"ok": true, ...}`` or
``{"ok": false, "error": {"code", "message"}}``, with the same use cases as REST. One
namespace class holds the events: each client event is a method taking the socket, its
user and the validated payload, so it can be tested on its own with in-memory use cases.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import socketio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chat_adapters.socketio.notifier import NAMESPACE, user_room
from chat_bootstrap.container import Container
from chat_domain.entities import MESSAGE_BODY_MAX, MarkerKind
from chat_domain.errors import DomainError, RateLimited, Unauthorized
from chat_domain.ports.rate_limit import RateLimiter, RateRule
from chat_domain.usecases.accounts import FindEndedSessions
from chat_domain.usecases.app_users import AuthenticateWithApp
from chat_domain.usecases.auth import Authenticate
from chat_domain.usecases.messages import (
    CLIENT_MSG_ID_MAX,
    PAGE_LIMIT_MAX,
    ListHistory,
    SendMessage,
)
from chat_domain.usecases.presence import PRESENCE, ConnectSocket, DisconnectSocket
from chat_domain.usecases.receipts import MoveMarker
from chat_domain.usecases.rooms import RelayTyping
from chat_domain.views import message_view
from chat_server.errors import describe_validation_error, error_body
from chat_server.session_watch import SessionWatch
from chat_server.typing_timers import TypingTimers

log = logging.getLogger("chat.realtime")
Ack = dict[str, Any]
# A typing indicator not refreshed within this many seconds is relayed as stopped.
TYPING_TTL = 5.0


class Event(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    room_id: str = Field(min_length=1, max_length=64)


class SendEvent(Event):
    body: str = Field(max_length=MESSAGE_BODY_MAX * 2)
    client_msg_id: str | None = Field(default=None, min_length=1, max_length=CLIENT_MSG_ID_MAX)


class MarkerEvent(Event):
    seq: int = Field(ge=0)


class TypingEvent(Event):
    is_typing: bool


class SyncEvent(Event):
    after_seq: int = Field(ge=0)
    limit: int | None = Field(default=None, ge=1, le=PAGE_LIMIT_MAX)


def ok(**fields: Any) -> Ack:
    return {"ok": True, **fields}


def failed(code: str, message: str, details: list[Any] | None = None) -> Ack:
    return {"ok": False, **error_body(code, message, details)}


@dataclass(frozen=True)
class SocketUseCases:
    """What the socket events call: the use cases, and the connect limits."""

    authenticate: Authenticate | AuthenticateWithApp  # as CHAT_AUTH_MODE chose
    connect_socket: ConnectSocket
    disconnect_socket: DisconnectSocket
    send_message: SendMessage
    move_marker: MoveMarker
    relay_typing: RelayTyping
    # The server's own "stopped typing" when an indicator expires: not charged to the user.
    expire_typing: RelayTyping
    list_history: ListHistory
    rate_limiter: RateLimiter
    connect_rate: RateRule
    max_sockets_per_user: int
    # Sockets whose session an operator ended are disconnected within this many seconds.
    find_ended_sessions: FindEndedSessions
    session_recheck_seconds: float

    @classmethod
    def of(cls, container: Container) -> SocketUseCases:
        return cls(
            authenticate=container.authenticate(),
            connect_socket=container.connect_socket(),
            disconnect_socket=container.disconnect_socket(),
            send_message=container.send_message(),
            move_marker=container.move_marker(),
            relay_typing=container.relay_typing(),
            expire_typing=container.expire_typing(),
            list_history=container.list_history(),
            rate_limiter=container.rate_limiter(),
            connect_rate=container.connect_rate(),
            max_sockets_per_user=container.settings().max_sockets_per_user,
            find_ended_sessions=container.find_ended_sessions(),
            session_recheck_seconds=container.settings().session_recheck_seconds,
        )


class ChatNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """The default namespace: connect, disconnect, and the client events of the contract."""

    # Client event -> (its method, its payload model). A table rather than python-socketio's
    # ``on_<event>`` names: the contract's names ("message:send") are no identifiers.
    EVENTS: dict[str, tuple[str, type[Event]]] = {
        "message:send": ("send", SendEvent),
        "delivered": ("delivered", MarkerEvent),
        "read": ("read", MarkerEvent),
        "typing": ("typing", TypingEvent),
        "sync": ("sync", SyncEvent),
    }

    def __init__(self, use_cases: SocketUseCases, typing_ttl: float = TYPING_TTL) -> None:
        super().__init__(NAMESPACE)
        self.use_cases = use_cases
        self.typing_timers = TypingTimers(use_cases.expire_typing, typing_ttl)
        self._users: dict[str, str] = {}  # sid -> user id, for the disconnect handler
        self._arriving: dict[str, asyncio.Task[None]] = {}  # sid -> its presence work
        self.sessions = SessionWatch(
            use_cases.find_ended_sessions, self.disconnect, use_cases.session_recheck_seconds
        )

    async def trigger_event(self, event: str, *args: Any) -> Any:
        if event == "connect":
            return await self.on_connect(*args)
        if event == "disconnect":
            return await self.on_disconnect(*args)
        if event in self.EVENTS:
            sid, *payload = args
            return await self.answer(event, sid, payload)
        return self.server.not_handled  # no ack, as for any event without a handler

    # --- client events: validated, answered through the ack ------------------------
    async def answer(self, event: str, sid: str, args: list[Any]) -> Ack:
        """Validate ``event``'s payload and run its method; every error becomes an ack."""
        method_name, model = self.EVENTS[event]
        method: Callable[[str, str, Any], Awaitable[Ack]] = getattr(self, method_name)
        # A client may emit any number of arguments; only one object is a payload,
        # anything else must still get an ack (a TypeError here would give none).
        data = args[0] if len(args) == 1 else list(args)
        try:
            payload = model.model_validate(data)
            return await method(sid, await self.user_of(sid), payload)
        except ValidationError as exc:
            message, _ = describe_validation_error(exc)
            return failed("validation_error", message)
        except RateLimited as exc:  # details: [{"retry_after": seconds}], as REST
            return failed(exc.code, exc.message, exc.details)
        except DomainError as exc:
            return failed(exc.code, exc.message)
        except Exception:
            log.exception("socket event %s failed", event)
            return failed("internal_error", "internal error")

    async def user_of(self, sid: str) -> str:
        session = await self.get_session(sid)
        user_id: str = session["user_id"]
        return user_id

    async def send(self, sid: str, user_id: str, data: SendEvent) -> Ack:
        result = await self.use_cases.send_message(
            user_id, data.room_id, data.body, data.client_msg_id
        )
        return ok(message=message_view(result.message, result.status))

    async def delivered(self, sid: str, user_id: str, data: MarkerEvent) -> Ack:
        await self.use_cases.move_marker(user_id, data.room_id, data.seq, MarkerKind.DELIVERED)
        return ok()

    async def read(self, sid: str, user_id: str, data: MarkerEvent) -> Ack:
        await self.use_cases.move_marker(user_id, data.room_id, data.seq, MarkerKind.READ)
        return ok()

    async def typing(self, sid: str, user_id: str, data: TypingEvent) -> Ack:
        await self.use_cases.relay_typing(user_id, data.room_id, data.is_typing)
        self.typing_timers.typing(sid, user_id, data.room_id, data.is_typing)
        return ok()

    async def sync(self, sid: str, user_id: str, data: SyncEvent) -> Ack:
        page = await self.use_cases.list_history(
            user_id, data.room_id, after_seq=data.after_seq, limit=data.limit or PAGE_LIMIT_MAX
        )
        return ok(
            messages=[message_view(m, page.status_of(m)) for m in page.messages],
            has_more=page.has_more,
        )

    # --- connection lifecycle --------------------------------------------------------
    def sockets_here(self, user_id: str) -> int:
        """The user's sockets on this node: the members of their socket.io room."""
        return sum(1 for _ in self.server.manager.get_participants(NAMESPACE, user_room(user_id)))

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        use_cases, max_sockets = self.use_cases, self.use_cases.max_sockets_per_user
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            user = await use_cases.authenticate(token if isinstance(token, str) else None)
            await use_cases.rate_limiter.acquire(user.id, use_cases.connect_rate)
        except Unauthorized:
            raise socketio.exceptions.ConnectionRefusedError("unauthorized") from None
        except RateLimited as exc:
            raise socketio.exceptions.ConnectionRefusedError(
                "rate_limited", {"retry_after": round(exc.retry_after, 3)}
            ) from None
        except DomainError as exc:  # e.g. the database is unavailable
            raise socketio.exceptions.ConnectionRefusedError(exc.code) from None
        room = user_room(user.id)
        if self.sockets_here(user.id) >= max_sockets:
            raise socketio.exceptions.ConnectionRefusedError(
                "too_many_connections", {"max": max_sockets}
            )
        # One socket.io room per user: events are addressed to users (see the notifier).
        # With the Redis manager this returns once this node is listed for the user's
        # events; if it cannot be, the socket is refused rather than left deaf.
        try:
            await self.enter_room(sid, room)
        except DomainError as exc:
            await self.leave_room(sid, room)
            raise socketio.exceptions.ConnectionRefusedError(exc.code) from None
        if self.sockets_here(user.id) > max_sockets:  # two connects raced for the last slot
            await self.leave_room(sid, room)
            raise socketio.exceptions.ConnectionRefusedError(
                "too_many_connections", {"max": max_sockets}
            )
        await self.save_session(sid, {"user_id": user.id})
        self._users[sid] = user.id
        self.sessions.opened(sid, user)
        # Presence runs after the connect handler returns: an event emitted to a socket
        # still "pre-connected" would reach the client before its CONNECT packet.
        task = asyncio.create_task(self.arrived(sid, user.id))
        self._arriving[sid] = task
        task.add_done_callback(lambda _: self._arriving.pop(sid, None))

    async def arrived(self, sid: str, user_id: str) -> None:
        """Announce the user if this is their first socket, then tell this socket which of
        its room mates are online, as one ``presence`` event each (online: true)."""
        try:
            for _ in range(1000):  # a few loop turns: until socket.io sent CONNECT
                if not self.server.manager.is_pre_connected(sid, NAMESPACE):
                    break
                await asyncio.sleep(0)
            online = await self.use_cases.connect_socket(user_id, sid)
            for contact_id in online:  # to this node's socket: the managers publish none
                await self.emit(PRESENCE, {"user_id": contact_id, "online": True}, to=sid)
        except Exception:
            log.exception("presence on connect failed for user %s", user_id)

    async def on_disconnect(self, sid: str, *_: Any) -> None:
        user_id = self._users.pop(sid, None)
        if user_id is None:
            return
        self.sessions.closed(sid)
        task = self._arriving.get(sid)
        if task is not None:  # its connect is still being recorded: let it finish first
            await asyncio.gather(task, return_exceptions=True)
        await self.typing_timers.socket_gone(sid)
        try:
            await self.use_cases.disconnect_socket(user_id, sid)
        except Exception:
            log.exception("presence on disconnect failed for user %s", user_id)


def register_socket_handlers(
    sio: socketio.AsyncServer, container: Container, typing_ttl: float = TYPING_TTL
) -> ChatNamespace:
    """Serve the contract's socket events on ``sio``, with the container's use cases."""
    namespace = ChatNamespace(SocketUseCases.of(container), typing_ttl)
    sio.register_namespace(namespace)
    return namespace
