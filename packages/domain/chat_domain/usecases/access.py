"""Who may see a room: its members, and nobody else learns it exists."""

from __future__ import annotations

from chat_domain.entities import Membership, Room
from chat_domain.errors import NotFound
from chat_domain.ports.storage import UnitOfWork
from chat_domain.text import is_id


async def require_member(uow: UnitOfWork, room_id: str, user_id: str) -> tuple[Room, Membership]:
    """The room and the caller's membership; ``NotFound`` alike for no room and no membership."""
    found = await uow.rooms.get_with_membership(room_id, user_id) if is_id(room_id) else None
    if found is None:
        raise NotFound("room not found")
    return found
