"""Delivery and read markers: per member of a room, moved only forward."""

from __future__ import annotations

from chat_domain.entities import MarkerKind, Membership
from chat_domain.errors import InvalidInput
from chat_domain.ports.notifier import RealtimeNotifier
from chat_domain.ports.rate_limit import RateLimiter, RateRule
from chat_domain.ports.storage import UnitOfWorkFactory
from chat_domain.usecases.access import require_member

RECEIPT = "receipt"


class MoveMarker:
    """A member reports it has received (``delivered``) or read messages up to ``seq``.

    Reading implies having received, so a read marker drags the delivery marker along.
    A change is emitted as ``receipt`` to the room; a report that moves nothing is silent.
    Each report is a write, so with a ``limiter`` a user's reports (delivered and read, every
    room together) are limited by ``rate_rule``: over it the call raises ``RateLimited`` and
    changes nothing (markers only move forward, so the next report catches up).
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        notifier: RealtimeNotifier,
        limiter: RateLimiter | None = None,
        rate_rule: RateRule | None = None,
    ) -> None:
        self._uow, self._notifier = uow, notifier
        self._limiter, self._rate_rule = limiter, rate_rule

    async def __call__(self, user_id: str, room_id: str, seq: int, kind: MarkerKind) -> None:
        if seq < 0:
            raise InvalidInput("seq: must be 0 or more")
        if self._limiter is not None and self._rate_rule is not None:
            await self._limiter.acquire(user_id, self._rate_rule)
        async with self._uow() as uow:
            room, before = await require_member(uow, room_id, user_id)
            seq = min(seq, room.last_seq)  # no marker beyond what exists
            after = await uow.rooms.advance_marker(
                room_id,
                user_id,
                delivered_seq=seq,
                read_seq=seq if kind is MarkerKind.READ else None,
            )
            member_ids = await uow.rooms.member_ids(room_id)
            await uow.commit()
        if after is None:
            return
        for marker, old, new in (
            (MarkerKind.DELIVERED, before.delivered_seq, after.delivered_seq),
            (MarkerKind.READ, before.read_seq, after.read_seq),
        ):
            if new > old:
                await self._notifier.emit_to_users(
                    member_ids,
                    RECEIPT,
                    {"room_id": room_id, "user_id": user_id, "seq": new, "kind": marker.value},
                )


class ListReceipts:
    """Every member's markers in a room, for a member."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, user_id: str, room_id: str) -> list[Membership]:
        async with self._uow.reading() as uow:
            await require_member(uow, room_id, user_id)
            return [m.membership for m in await uow.rooms.members(room_id)]
