"""What an operator does from the command line, beside the public API."""

from __future__ import annotations

from chat_domain.errors import InvalidInput
from chat_domain.ports.storage import RoomListing, UnitOfWorkFactory

ROOM_LISTING_MAX = 10_000


class ListAllRooms:
    """Every room of the service, newest first, with its member count (for operators)."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, limit: int) -> list[RoomListing]:
        if not 1 <= limit <= ROOM_LISTING_MAX:
            raise InvalidInput(f"limit: must be 1..{ROOM_LISTING_MAX}")
        async with self._uow.reading() as uow:
            return await uow.rooms.list_recent(limit)
