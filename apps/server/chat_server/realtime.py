"""socket.io events: authenticate the connect packet, then map client events to use cases.

Every client event answers through its acknowledgement, ``{"ok": true, ...}`` or
``{"ok": false, "error": {"code", "message"}}``, with the same use cases as REST.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import socketio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chat_adapters.socketio.notifier import NAMESPACE, user_room
from chat_bootstrap.container import Container
from chat_domain.entities import MESSAGE_BODY_MAX, MarkerKind
from chat_domain.errors import DomainError, RateLimited, Unauthorized
from chat_domain.usecases.messages import CLIENT_MSG_ID_MAX, PAGE_LIMIT_MAX
from chat_domain.usecases.presence import PRESENCE
from chat_domain.views import message_view
from chat_server.errors import describe_validation_error, error_body

log = logging.getLogger("chat.realtime")
Ack = dict[str, Any]
# A typing indicator not refreshed within this many seconds is relayed as stopped.
TYPING_TTL = 5.0
# The socket whose event is being handled (each socket.io event runs in its own task).
current_sid: ContextVar[str] = ContextVar("current_sid")


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


def failed(code: str, message: str) -> Ack:
    return {"ok": False, **error_body(code, message)}


class TypingTimers:
    """This node's typing indicators: per socket and room, a timer that relays
    ``is_typing: false`` when no refresh comes within ``ttl`` (and at once when the socket
    goes), so a client that crashed mid-word never leaves "typing..." on screen for good."""

    def __init__(self, relay: Callable[[str, str, bool], Awaitable[None]], ttl: float) -> None:
        self._relay, self._ttl = relay, ttl
        self._timers: dict[tuple[str, str], tuple[str, asyncio.TimerHandle]] = {}
        self._relaying: set[asyncio.Task[None]] = set()

    def typing(self, sid: str, user_id: str, room_id: str, is_typing: bool) -> None:
        """After a relayed ``typing`` event: (re)arm the timer, or disarm it on a stop."""
        key = (sid, room_id)
        previous = self._timers.pop(key, None)
        if previous is not None:
            previous[1].cancel()
        if is_typing:
            timer = asyncio.get_running_loop().call_later(self._ttl, self._expire, key)
            self._timers[key] = (user_id, timer)

    async def socket_gone(self, sid: str) -> None:
        for key in [k for k in self._timers if k[0] == sid]:
            user_id, timer = self._timers.pop(key)
            timer.cancel()
            await self._stop(user_id, key[1])

    def _expire(self, key: tuple[str, str]) -> None:
        user_id, _ = self._timers.pop(key)
        task = asyncio.create_task(self._stop(user_id, key[1]))
        self._relaying.add(task)  # keep a reference until it is done
        task.add_done_callback(self._relaying.discard)

    async def _stop(self, user_id: str, room_id: str) -> None:
        try:
            await self._relay(user_id, room_id, False)
        except DomainError:
            pass  # no longer a member of the room: nobody there to tell
        except Exception:
            log.exception("relaying the end of typing in room %s failed", room_id)


def register_socket_handlers(
    sio: socketio.AsyncServer, container: Container, typing_ttl: float = TYPING_TTL
) -> None:
    typing_timers = TypingTimers(
        lambda user_id, room_id, is_typing: container.relay_typing()(user_id, room_id, is_typing),
        typing_ttl,
    )
    users: dict[str, str] = {}  # sid -> user id, for the disconnect handler
    arriving: dict[str, asyncio.Task[None]] = {}  # sid -> its presence work after connect

    async def user_of(sid: str) -> str:
        session = await sio.get_session(sid)
        user_id: str = session["user_id"]
        return user_id

    def event(
        name: str, model: type[Event]
    ) -> Callable[[Callable[[str, Any], Awaitable[Ack]]], None]:
        """Register a client event whose payload is validated by ``model``; errors become acks."""

        def decorator(handler: Callable[[str, Any], Awaitable[Ack]]) -> None:
            async def wrapper(sid: str, *args: Any) -> Ack:
                # A client may emit any number of arguments; only one object is a payload,
                # anything else must still get an ack (a TypeError here would give none).
                data = args[0] if len(args) == 1 else list(args)
                current_sid.set(sid)
                try:
                    payload = model.model_validate(data)
                    return await handler(await user_of(sid), payload)
                except ValidationError as exc:
                    message, _ = describe_validation_error(exc)
                    return failed("validation_error", message)
                except DomainError as exc:
                    return failed(exc.code, exc.message)
                except Exception:
                    log.exception("socket event %s failed", name)
                    return failed("internal_error", "internal error")

            sio.on(name, handler=wrapper)

        return decorator

    max_sockets = container.settings().max_sockets_per_user

    def sockets_here(user_id: str) -> int:
        """The user's sockets on this node: the members of their socket.io room."""
        return sum(1 for _ in sio.manager.get_participants("/", user_room(user_id)))

    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            user = await container.authenticate()(token if isinstance(token, str) else None)
            await container.rate_limiter().acquire(user.id, container.connect_rate())
        except Unauthorized:
            raise socketio.exceptions.ConnectionRefusedError("unauthorized") from None
        except RateLimited as exc:
            raise socketio.exceptions.ConnectionRefusedError(
                "rate_limited", {"retry_after": round(exc.retry_after, 3)}
            ) from None
        except DomainError as exc:  # e.g. the database is unavailable
            raise socketio.exceptions.ConnectionRefusedError(exc.code) from None
        room = user_room(user.id)
        if sockets_here(user.id) >= max_sockets:
            raise socketio.exceptions.ConnectionRefusedError(
                "too_many_connections", {"max": max_sockets}
            )
        # One socket.io room per user: events are addressed to users (see the notifier).
        # With the Redis manager this returns once this node is listed for the user's
        # events; if it cannot be, the socket is refused rather than left deaf.
        try:
            await sio.enter_room(sid, room)
        except DomainError as exc:
            await sio.leave_room(sid, room)
            raise socketio.exceptions.ConnectionRefusedError(exc.code) from None
        if sockets_here(user.id) > max_sockets:  # two connects raced for the last slot
            await sio.leave_room(sid, room)
            raise socketio.exceptions.ConnectionRefusedError(
                "too_many_connections", {"max": max_sockets}
            )
        await sio.save_session(sid, {"user_id": user.id})
        users[sid] = user.id
        # Presence runs after the connect handler returns: an event emitted to a socket
        # still "pre-connected" would reach the client before its CONNECT packet.
        task = asyncio.create_task(arrived(sid, user.id))
        arriving[sid] = task
        task.add_done_callback(lambda _: arriving.pop(sid, None))

    sio.on("connect", handler=connect)

    async def arrived(sid: str, user_id: str) -> None:
        """Announce the user if this is their first socket, then tell this socket which of
        its room mates are online, as one ``presence`` event each (online: true)."""
        try:
            for _ in range(1000):  # a few loop turns: until socket.io sent CONNECT
                if not sio.manager.is_pre_connected(sid, NAMESPACE):
                    break
                await asyncio.sleep(0)
            online = await container.connect_socket()(user_id, sid)
            for contact_id in online:  # to this node's socket: the managers publish none
                await sio.emit(PRESENCE, {"user_id": contact_id, "online": True}, to=sid)
        except Exception:
            log.exception("presence on connect failed for user %s", user_id)

    async def disconnect(sid: str, *_: Any) -> None:
        user_id = users.pop(sid, None)
        if user_id is None:
            return
        task = arriving.get(sid)
        if task is not None:  # its connect is still being recorded: let it finish first
            await asyncio.gather(task, return_exceptions=True)
        await typing_timers.socket_gone(sid)
        try:
            await container.disconnect_socket()(user_id, sid)
        except Exception:
            log.exception("presence on disconnect failed for user %s", user_id)

    sio.on("disconnect", handler=disconnect)

    @event("message:send", SendEvent)
    async def send(user_id: str, data: SendEvent) -> Ack:
        result = await container.send_message()(
            user_id, data.room_id, data.body, data.client_msg_id
        )
        return ok(message=message_view(result.message, result.status))

    @event("delivered", MarkerEvent)
    async def delivered(user_id: str, data: MarkerEvent) -> Ack:
        await container.move_marker()(user_id, data.room_id, data.seq, MarkerKind.DELIVERED)
        return ok()

    @event("read", MarkerEvent)
    async def read(user_id: str, data: MarkerEvent) -> Ack:
        await container.move_marker()(user_id, data.room_id, data.seq, MarkerKind.READ)
        return ok()

    @event("typing", TypingEvent)
    async def typing(user_id: str, data: TypingEvent) -> Ack:
        await container.relay_typing()(user_id, data.room_id, data.is_typing)
        typing_timers.typing(current_sid.get(), user_id, data.room_id, data.is_typing)
        return ok()

    @event("sync", SyncEvent)
    async def sync(user_id: str, data: SyncEvent) -> Ack:
        page = await container.list_history()(
            user_id, data.room_id, after_seq=data.after_seq, limit=data.limit or PAGE_LIMIT_MAX
        )
        return ok(
            messages=[message_view(m, page.status_of(m)) for m in page.messages],
            has_more=page.has_more,
        )
