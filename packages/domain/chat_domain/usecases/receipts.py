"""Delivery and read markers: per member of a room, moved only forward."""

from __future__ import annotations

from chat_domain.entities import MarkerKind, Membership
from chat_domain.errors import InvalidInput
from chat_domain.ports.notifier import RealtimeNotifier
from chat_domain.ports.storage import UnitOfWorkFactory
from chat_domain.usecases.access import require_member

RECEIPT = "receipt"


class MoveMarker:
    """A member reports it has received (``delivered``) or read messages up to ``seq``.

    Reading implies having received, so a read marker drags the delivery marker along.
    A change is emitted as ``receipt`` to the room; a report that moves nothing is silent.
    """

    def __init__(self, uow: UnitOfWorkFactory, notifier: RealtimeNotifier) -> None:
        self._uow, self._notifier = uow, notifier

    async def __call__(self, user_id: str, room_id: str, seq: int, kind: MarkerKind) -> None:
        if seq < 0:
            raise InvalidInput("seq: must be 0 or more")
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
