"""Presence in one process: enough for the embedded mode, where every socket is local."""

from __future__ import annotations

from collections.abc import Iterable

from chat_domain.ports.presence import PresenceTracker


class InMemoryPresenceTracker(PresenceTracker):
    """Socket ids per user in a dict. Calls never await, so each one is atomic on the loop."""

    def __init__(self) -> None:
        self._sockets: dict[str, set[str]] = {}

    async def socket_connected(self, user_id: str, socket_id: str) -> bool:
        sockets = self._sockets.setdefault(user_id, set())
        was_offline = not sockets
        sockets.add(socket_id)
        return was_offline

    async def socket_disconnected(self, user_id: str, socket_id: str) -> bool:
        sockets = self._sockets.get(user_id)
        if not sockets or socket_id not in sockets:
            return False  # unknown socket (a refused connect, a double disconnect): no edge
        sockets.discard(socket_id)
        if sockets:
            return False
        del self._sockets[user_id]
        return True

    async def online(self, user_ids: Iterable[str]) -> set[str]:
        return {uid for uid in user_ids if self._sockets.get(uid)}
