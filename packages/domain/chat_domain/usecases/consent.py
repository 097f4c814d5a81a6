"""Consent to membership: who may put a user in a room, and whose presence a user sees.

The contract lets any member add a user to a group room. Three rules bound that:

- a user who blocked someone is never put in a room by them (a direct room opened by
  them, a group they create, a group they add to);
- a member the owner removed comes back only if the owner adds them back;
- a blocked user does not see the blocker's presence.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from chat_domain.entities import Block, Membership
from chat_domain.errors import Forbidden
from chat_domain.ports.storage import UnitOfWork

# One answer whatever was refused: the caller learns they may not, as with any 403.
REFUSED_BY_USER = "this user does not accept that from you"


async def require_not_blocked(uow: UnitOfWork, actor_id: str, user_ids: Collection[str]) -> None:
    """``Forbidden`` if any of ``user_ids`` blocks ``actor_id``."""
    if not user_ids:
        return
    wanted = set(user_ids)
    blocks = await uow.blocks.involving(actor_id)
    if any(b.blocked_id == actor_id and b.blocker_id in wanted for b in blocks):
        raise Forbidden(REFUSED_BY_USER)


async def require_may_add_back(
    uow: UnitOfWork, room_id: str, actor: Membership, user_id: str
) -> bool:
    """Whether the owner had removed ``user_id``; ``Forbidden`` if so and the actor is not
    the owner (a member cannot undo the owner's removal)."""
    removed = await uow.rooms.was_removed(room_id, user_id)
    if removed and not actor.is_owner:
        raise Forbidden("only the room's owner may add back a member the owner removed")
    return removed


def presence_audience(user_id: str, contacts: Sequence[str], blocks: Sequence[Block]) -> list[str]:
    """The contacts who may see ``user_id``'s presence: not those ``user_id`` blocks."""
    hidden_from = {b.blocked_id for b in blocks if b.blocker_id == user_id}
    return [uid for uid in contacts if uid not in hidden_from]


def visible_contacts(user_id: str, contacts: Sequence[str], blocks: Sequence[Block]) -> list[str]:
    """The contacts whose presence ``user_id`` may see: not those who block ``user_id``."""
    hiding = {b.blocker_id for b in blocks if b.blocked_id == user_id}
    return [uid for uid in contacts if uid not in hiding]
