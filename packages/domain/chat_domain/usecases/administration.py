"""What an operator does from the command line, beside the public API."""

from __future__ import annotations

from datetime import timedelta

from chat_domain.errors import InvalidInput
from chat_domain.ports.storage import RoomListing, UnitOfWorkFactory
from chat_domain.ports.system import Clock

ROOM_LISTING_MAX = 10_000
PRUNE_BATCH = 1000


class ListAllRooms:
    """Every room of the service, newest first, with its member count (for operators)."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, limit: int) -> list[RoomListing]:
        if not 1 <= limit <= ROOM_LISTING_MAX:
            raise InvalidInput(f"limit: must be 1..{ROOM_LISTING_MAX}")
        async with self._uow.reading() as uow:
            return await uow.rooms.list_recent(limit)


class PruneMessages:
    """Retention: erase the bodies of messages older than a number of days.

    They stay as tombstones (``deleted``, empty body), as a deleted message does, so each
    room's ``seq`` keeps no gap and a client's ``sync`` from an old seq still lines up.
    Works in batches of ``batch``, each its own transaction, so a large prune never holds
    the messages table for long; no event is sent for them.
    """

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, batch: int = PRUNE_BATCH) -> None:
        self._uow, self._clock, self._batch = uow, clock, batch

    async def __call__(self, older_than_days: int) -> int:
        if older_than_days < 1:
            raise InvalidInput("older than: must be at least 1 day")
        cutoff = self._clock.now() - timedelta(days=older_than_days)
        erased = 0
        while True:
            async with self._uow() as uow:
                count = await uow.messages.erase_before(cutoff, self._batch)
                await uow.commit()
            erased += count
            if count < self._batch:
                return erased
