"""Blocking a user: what the blocked user may no longer do to the blocker.

A blocked user cannot open a direct room with the blocker, create a room with the
blocker in it, or add the blocker to a room, and does not see the blocker's presence.
Rooms already shared stay as they are: the blocker leaves them if they wish, and the
blocked user cannot bring them back (see ``chat_domain.usecases.consent``).
"""

from __future__ import annotations

from chat_domain.entities import Block, BlockedUser
from chat_domain.errors import InvalidInput, NotFound
from chat_domain.ports.notifier import RealtimeNotifier
from chat_domain.ports.presence import PresenceTracker
from chat_domain.ports.storage import UnitOfWorkFactory
from chat_domain.ports.system import Clock
from chat_domain.text import is_id
from chat_domain.usecases.presence import PRESENCE


class BlockUser:
    """The caller blocks a user; blocking again changes nothing.

    A blocked user who shares a room with the blocker is told the blocker is offline,
    so that what they saw before the block does not linger.
    """

    def __init__(self, uow: UnitOfWorkFactory, notifier: RealtimeNotifier, clock: Clock) -> None:
        self._uow, self._notifier, self._clock = uow, notifier, clock

    async def __call__(self, blocker_id: str, user_id: str) -> tuple[BlockedUser, bool]:
        """The block and whether it is new."""
        if user_id == blocker_id:
            raise InvalidInput("user_id: you cannot block yourself")
        if not is_id(user_id):
            raise NotFound("user not found")
        async with self._uow() as uow:
            user = await uow.users.get(user_id)
            if user is None:
                raise NotFound("user not found")
            existing = await uow.blocks.get(blocker_id, user_id)
            if existing is not None:
                return BlockedUser(existing, user.username), False
            block = Block(blocker_id, user_id, self._clock.now())
            await uow.blocks.add(block)
            shares_a_room = user_id in await uow.rooms.contact_ids(blocker_id)
            await uow.commit()
        if shares_a_room:
            await self._notifier.emit_to_users(
                [user_id], PRESENCE, {"user_id": blocker_id, "online": False}
            )
        return BlockedUser(block, user.username), True


class UnblockUser:
    """The caller lifts a block; lifting one that does not exist changes nothing.

    The unblocked user, if they share a room with the caller, learns the caller's
    presence again at once.
    """

    def __init__(
        self, uow: UnitOfWorkFactory, presence: PresenceTracker, notifier: RealtimeNotifier
    ) -> None:
        self._uow, self._presence, self._notifier = uow, presence, notifier

    async def __call__(self, blocker_id: str, user_id: str) -> None:
        if not is_id(user_id):
            return  # names nobody, so blocks nobody
        async with self._uow() as uow:
            if await uow.blocks.get(blocker_id, user_id) is None:
                return
            await uow.blocks.remove(blocker_id, user_id)
            shares_a_room = user_id in await uow.rooms.contact_ids(blocker_id)
            await uow.commit()
        if shares_a_room and await self._presence.online([blocker_id]):
            await self._notifier.emit_to_users(
                [user_id], PRESENCE, {"user_id": blocker_id, "online": True}
            )


class ListBlocks:
    """The users the caller blocks, oldest block first."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, blocker_id: str) -> list[BlockedUser]:
        async with self._uow.reading() as uow:
            return await uow.blocks.blocked_by(blocker_id)
