"""socket.io events: authenticate the connect packet, then map client events to use cases.

Every client event answers through its acknowledgement, ``{"ok": true, ...}`` or
``{"ok": false, "error": {"code", "message"}}``, with the same use cases as REST.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from chat_adapters.socketio.notifier import user_room
from chat_bootstrap.container import Container
from chat_domain.entities import MESSAGE_BODY_MAX, MarkerKind
from chat_domain.errors import DomainError, Unauthorized
from chat_domain.usecases.messages import CLIENT_MSG_ID_MAX, PAGE_LIMIT_MAX
from chat_domain.views import message_view
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chat_server.errors import describe_validation_error, error_body

log = logging.getLogger("chat.realtime")
Ack = dict[str, Any]


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


def register_socket_handlers(sio: socketio.AsyncServer, container: Container) -> None:
    async def user_of(sid: str) -> str:
        session = await sio.get_session(sid)
        user_id: str = session["user_id"]
        return user_id

    def event(
        name: str, model: type[Event]
    ) -> Callable[[Callable[[str, Any], Awaitable[Ack]]], None]:
        """Register a client event whose payload is validated by ``model``; errors become acks."""

        def decorator(handler: Callable[[str, Any], Awaitable[Ack]]) -> None:
            async def wrapper(sid: str, data: Any = None) -> Ack:
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

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            user = await container.authenticate()(token if isinstance(token, str) else None)
        except Unauthorized:
            raise socketio.exceptions.ConnectionRefusedError("unauthorized") from None
        await sio.save_session(sid, {"user_id": user.id})
        # One socket.io room per user: events are addressed to users (see the notifier).
        await sio.enter_room(sid, user_room(user.id))

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
