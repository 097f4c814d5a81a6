"""The realtime notifier on socket.io: every socket joins its user's room, events go to users."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from chat_domain.ports.notifier import Notification, Payload, RealtimeNotifier

NAMESPACE = "/"
USER_ROOM_PREFIX = "user:"  # the Redis manager routes emits to these rooms by node


def user_room(user_id: str) -> str:
    """The socket.io room that holds every socket of one user, on every node.

    Prefixed so it can never collide with a socket id (python-socketio refuses that).
    """
    return f"{USER_ROOM_PREFIX}{user_id}"


def _user_rooms(user_ids: Iterable[str]) -> list[str]:
    return [user_room(uid) for uid in dict.fromkeys(user_ids)]


class SocketIOEmitter(Protocol):
    """What both a socket.io server and a write-only manager offer for emitting."""

    async def emit(
        self, event: str, data: Any, namespace: str | None = None, room: Any = None
    ) -> None: ...


class SocketIONotifier(RealtimeNotifier):
    """Emits through a socket.io server (server nodes) or a write-only manager (workers).

    With the Redis manager, one emit is one pub/sub message to each node holding a
    socket of one of the users, which fans it out to its local sockets; with the local
    manager it goes straight to this process's sockets. A list of user rooms is one
    packet encoded once, deduplicated per socket.
    """

    def __init__(self, emitter: SocketIOEmitter) -> None:
        self._emitter = emitter

    async def emit_to_users(self, user_ids: Iterable[str], event: str, payload: Payload) -> None:
        rooms = _user_rooms(user_ids)
        if rooms:
            await self._emitter.emit(event, dict(payload), namespace=NAMESPACE, room=rooms)

    async def emit_many(self, notifications: Sequence[Notification]) -> None:
        # The supervised Redis manager publishes them in one message; a server emits each.
        emit_many = getattr(self._emitter, "emit_many", None)
        if emit_many is None:
            await super().emit_many(notifications)
            return
        emits = [(n.event, dict(n.payload), _user_rooms(n.user_ids)) for n in notifications]
        await emit_many([emit for emit in emits if emit[2]], namespace=NAMESPACE)

    async def check(self) -> None:
        """Delegate to the manager's ``check()`` (the supervised Redis manager has one)."""
        manager = getattr(self._emitter, "manager", self._emitter)  # a server, or a manager
        check = getattr(manager, "check", None)
        if check is not None:
            await check()
