"""Presence: a user is online while one of their sockets is connected, on any node.

``presence`` events go to the users who share a room with the user, on the edges only:
the first socket connecting, the last one disconnecting (the tracker says which call
crossed the edge, atomically, so each change is announced once across nodes). A user
the user blocks is not told, and is left out of the user's online snapshot of them.
"""

from __future__ import annotations

from chat_domain.entities import Block
from chat_domain.ports.notifier import RealtimeNotifier
from chat_domain.ports.presence import PresenceTracker
from chat_domain.ports.storage import UnitOfWorkFactory
from chat_domain.usecases.consent import presence_audience, visible_contacts

PRESENCE = "presence"


async def contacts_of(
    uow_factory: UnitOfWorkFactory, user_id: str
) -> tuple[list[str], list[Block]]:
    """Every user who shares at least one room with ``user_id``, not the user; and the
    blocks either way between ``user_id`` and anyone (read only if there are contacts)."""
    async with uow_factory.reading() as uow:
        contacts = await uow.rooms.contact_ids(user_id)
        return contacts, await uow.blocks.involving(user_id) if contacts else []


class ConnectSocket:
    """A socket of a user connected: announce the user if it is their first; answer which
    of their contacts are online (the server sends that snapshot to the new socket)."""

    def __init__(
        self, uow: UnitOfWorkFactory, presence: PresenceTracker, notifier: RealtimeNotifier
    ) -> None:
        self._uow, self._presence, self._notifier = uow, presence, notifier

    async def __call__(self, user_id: str, socket_id: str) -> list[str]:
        became_online = await self._presence.socket_connected(user_id, socket_id)
        contacts, blocks = await contacts_of(self._uow, user_id)
        audience = presence_audience(user_id, contacts, blocks)
        if became_online and audience:
            await self._notifier.emit_to_users(
                audience, PRESENCE, {"user_id": user_id, "online": True}
            )
        visible = visible_contacts(user_id, contacts, blocks)
        online = await self._presence.online(visible)
        return [uid for uid in visible if uid in online]


class DisconnectSocket:
    """A socket of a user went away: announce the user offline if it was their last."""

    def __init__(
        self, uow: UnitOfWorkFactory, presence: PresenceTracker, notifier: RealtimeNotifier
    ) -> None:
        self._uow, self._presence, self._notifier = uow, presence, notifier

    async def __call__(self, user_id: str, socket_id: str) -> bool:
        """Whether the user went offline."""
        if not await self._presence.socket_disconnected(user_id, socket_id):
            return False
        contacts, blocks = await contacts_of(self._uow, user_id)
        audience = presence_audience(user_id, contacts, blocks)
        if audience:
            await self._notifier.emit_to_users(
                audience, PRESENCE, {"user_id": user_id, "online": False}
            )
        return True
