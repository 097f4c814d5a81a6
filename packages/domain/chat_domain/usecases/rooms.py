"""Rooms and their members."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chat_domain.entities import (
    Member,
    Membership,
    Role,
    Room,
    RoomKind,
    RoomSummary,
    normalise_room_name,
)
from chat_domain.errors import Conflict, Forbidden, InvalidInput, LimitExceeded, NotFound
from chat_domain.ports.notifier import RealtimeNotifier
from chat_domain.ports.rate_limit import RateLimiter, RateRule
from chat_domain.ports.storage import UnitOfWork, UnitOfWorkFactory
from chat_domain.ports.system import Clock, IdGenerator
from chat_domain.text import is_id
from chat_domain.usecases.access import require_member
from chat_domain.usecases.consent import require_may_add_back, require_not_blocked
from chat_domain.usecases.webhooks import WebhookAnnouncements

MEMBER_ADDED = "room:member_added"
MEMBER_REMOVED = "room:member_removed"
OWNER_CHANGED = "room:owner_changed"


@dataclass(frozen=True, slots=True)
class RoomDetails:
    room: Room
    members: list[Member]


async def _require_users(uow: UnitOfWork, user_ids: Sequence[str]) -> None:
    for user_id in user_ids:
        if not is_id(user_id):
            raise InvalidInput("member_ids: unknown user")  # not echoed: it is no id
        if await uow.users.get(user_id) is None:
            raise InvalidInput(f"member_ids: unknown user {user_id}")


async def _require_room_budget(uow: UnitOfWork, user_id: str, max_rooms: int) -> None:
    """A user already in ``max_rooms`` rooms may not create or open another one."""
    if len(await uow.rooms.room_ids_of(user_id)) >= max_rooms:
        raise LimitExceeded(f"a user may be in at most {max_rooms} rooms")


class CreateGroupRoom:
    """Create a group room; its creator is the owner and a member."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        notifier: RealtimeNotifier,
        clock: Clock,
        ids: IdGenerator,
        max_members: int = 1000,
        max_rooms_per_user: int = 1000,
        webhooks: WebhookAnnouncements | None = None,
    ) -> None:
        self._uow, self._notifier, self._clock, self._ids = uow, notifier, clock, ids
        self._max_members, self._max_rooms = max_members, max_rooms_per_user
        self._webhooks = webhooks

    async def __call__(self, creator_id: str, name: str, member_ids: Sequence[str]) -> RoomDetails:
        name = normalise_room_name(name)
        others = [uid for uid in dict.fromkeys(member_ids) if uid != creator_id]
        if len(others) + 1 > self._max_members:
            raise LimitExceeded(f"member_ids: a room has at most {self._max_members} members")
        now = self._clock.now()
        room = Room(self._ids.new_id(), name, RoomKind.GROUP, now)
        async with self._uow() as uow:
            await _require_room_budget(uow, creator_id, self._max_rooms)
            await _require_users(uow, others)
            await require_not_blocked(uow, creator_id, others)
            await uow.rooms.add(room)
            await uow.rooms.add_member(Membership(room.id, creator_id, Role.OWNER, now))
            for uid in others:
                await uow.rooms.add_member(Membership(room.id, uid, Role.MEMBER, now))
            members = await uow.rooms.members(room.id)
            if self._webhooks is not None:  # with the room, in its transaction
                await self._webhooks.members_added(uow, room.id, [creator_id, *others], creator_id)
            await uow.commit()
        # Each member's sockets learn of the new room; they fetch it for the member list.
        for uid in (creator_id, *others):
            await self._notifier.emit_to_users(
                [uid], MEMBER_ADDED, {"room_id": room.id, "user_id": uid}
            )
        if self._webhooks is not None:
            self._webhooks.relay_soon()
        return RoomDetails(room, members)


class OpenDirectRoom:
    """The one direct room of a pair of users, created on first use with both in it.

    Opening it again brings back the caller if they had left, never the other user: one
    who left comes back only by opening it themselves. Until then the caller has the room
    without them, and what the caller sends there reaches only the caller. A user who
    blocks the caller cannot be reached this way at all (``Forbidden``).

    Whoever it makes a member is announced to webhooks as ``member.added`` (both users
    when it creates the room, the caller when they come back), by the caller.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        notifier: RealtimeNotifier,
        clock: Clock,
        ids: IdGenerator,
        max_rooms_per_user: int = 1000,
        webhooks: WebhookAnnouncements | None = None,
    ) -> None:
        self._uow, self._notifier, self._clock, self._ids = uow, notifier, clock, ids
        self._max_rooms = max_rooms_per_user
        self._webhooks = webhooks

    async def __call__(
        self, creator_id: str, member_ids: Sequence[str]
    ) -> tuple[RoomDetails, bool]:
        """The room and whether it was created now."""
        others = {uid for uid in member_ids if uid != creator_id}
        if len(others) != 1:
            raise InvalidInput("member_ids: a direct room needs exactly one other user")
        (other_id,) = others
        if not is_id(other_id):
            raise InvalidInput("member_ids: unknown user")
        key = Room.direct_key_for(creator_id, other_id)
        try:
            async with self._uow() as uow:
                await require_not_blocked(uow, creator_id, [other_id])
                room = await uow.rooms.get_direct(key)
                created = room is None
                if room is None:
                    await _require_room_budget(uow, creator_id, self._max_rooms)
                    await _require_users(uow, [other_id])
                    room = Room(
                        self._ids.new_id(), "", RoomKind.DIRECT, self._clock.now(), direct_key=key
                    )
                    await uow.rooms.add(room)  # Conflict if the pair raced us: see below
                joined = await self._rejoin(
                    uow, room, (creator_id, other_id) if created else (creator_id,)
                )
                members = await uow.rooms.members(room.id)
                await self._announce(uow, room, joined, creator_id)
                await uow.commit()
        except Conflict:
            # Both users opened the pair's room at once and the other won: answer with theirs.
            async with self._uow() as uow:
                room = await uow.rooms.get_direct(key)
                if room is None:
                    raise
                joined = await self._rejoin(uow, room, (creator_id,))
                members = await uow.rooms.members(room.id)
                await self._announce(uow, room, joined, creator_id)
                await uow.commit()
            created = False
        for uid in joined:
            await self._notifier.emit_to_users(
                [uid], MEMBER_ADDED, {"room_id": room.id, "user_id": uid}
            )
        if joined and self._webhooks is not None:
            self._webhooks.relay_soon()
        return RoomDetails(room, members), created

    async def _announce(
        self, uow: UnitOfWork, room: Room, joined: list[str], actor_id: str
    ) -> None:
        """Record ``member.added`` for who joined, in the room's own transaction."""
        if joined and self._webhooks is not None:
            await self._webhooks.members_added(uow, room.id, joined, actor_id)

    async def _rejoin(self, uow: UnitOfWork, room: Room, user_ids: tuple[str, ...]) -> list[str]:
        """Make these users members (again): the caller who left the pair's room gets it back,
        with its history, on the next open. Who was added."""
        joined = []
        for uid in user_ids:
            if await uow.rooms.get_membership(room.id, uid) is None:
                await uow.rooms.add_member(
                    Membership.newcomer(room, uid, Role.MEMBER, self._clock.now())
                )
                joined.append(uid)
        return joined


class GetRoom:
    """A room with its members, for a member."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, user_id: str, room_id: str) -> RoomDetails:
        async with self._uow.reading() as uow:
            room, _ = await require_member(uow, room_id, user_id)
            return RoomDetails(room, await uow.rooms.members(room_id))


class ListRooms:
    """The caller's rooms, most recent activity first."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, user_id: str) -> list[RoomSummary]:
        async with self._uow.reading() as uow:
            return await uow.rooms.summaries_for(user_id)


class AddMember:
    """Any member of a group room may add a user; adding a member again changes nothing.

    Not a user who blocks the actor, and not one the owner removed unless the owner
    adds them back (``Forbidden``).
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        notifier: RealtimeNotifier,
        clock: Clock,
        max_members: int = 1000,
        webhooks: WebhookAnnouncements | None = None,
    ) -> None:
        self._uow, self._notifier, self._clock = uow, notifier, clock
        self._max_members, self._webhooks = max_members, webhooks

    async def __call__(self, actor_id: str, room_id: str, user_id: str) -> tuple[Member, bool]:
        """The member and whether they were added now."""
        async with self._uow() as uow:
            room, actor = await require_member(uow, room_id, actor_id)
            if room.kind is RoomKind.DIRECT:
                raise Forbidden("a direct room has exactly its two users")
            user = await uow.users.get(user_id) if is_id(user_id) else None
            if user is None:
                raise NotFound("user not found")
            existing = await uow.rooms.get_membership(room_id, user_id)
            if existing:
                return Member(existing, user.username), False
            await require_not_blocked(uow, actor_id, [user_id])
            removed = await require_may_add_back(uow, room_id, actor, user_id)
            member_ids = await uow.rooms.member_ids(room_id)
            if len(member_ids) >= self._max_members:
                raise LimitExceeded(f"a room has at most {self._max_members} members")
            membership = Membership.newcomer(room, user_id, Role.MEMBER, self._clock.now())
            await uow.rooms.add_member(membership)
            if removed:
                await uow.rooms.forget_removal(room_id, user_id)
            if self._webhooks is not None:  # with the change, in its transaction
                await self._webhooks.members_added(uow, room_id, [user_id], actor_id)
            await uow.commit()
        await self._notifier.emit_to_users(
            [*member_ids, user_id], MEMBER_ADDED, {"room_id": room_id, "user_id": user_id}
        )
        if self._webhooks is not None:
            self._webhooks.relay_soon()
        return Member(membership, user.username), True


class RemoveMember:
    """A member may leave; only the owner may remove someone else. Takes effect at once.

    The room remembers whom the owner removed: only the owner adds them back. The owner
    leaves only as the last member, or after handing the room over (``Conflict``), so a
    room with members always has someone to administer it.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        notifier: RealtimeNotifier,
        clock: Clock,
        webhooks: WebhookAnnouncements | None = None,
    ) -> None:
        self._uow, self._notifier, self._clock = uow, notifier, clock
        self._webhooks = webhooks

    async def __call__(self, actor_id: str, room_id: str, user_id: str) -> None:
        async with self._uow() as uow:
            _, actor = await require_member(uow, room_id, actor_id)
            if user_id != actor_id and not actor.is_owner:
                raise Forbidden("only the room's owner may remove another member")
            if not is_id(user_id) or await uow.rooms.get_membership(room_id, user_id) is None:
                raise NotFound("member not found")
            member_ids = await uow.rooms.member_ids(room_id)
            if user_id == actor_id and actor.is_owner and len(member_ids) > 1:
                raise Conflict("the owner hands the room to another member before leaving")
            await uow.rooms.remove_member(room_id, user_id)
            if user_id != actor_id:
                await uow.rooms.record_removal(room_id, user_id, self._clock.now())
            if self._webhooks is not None:  # with the change, in its transaction
                await self._webhooks.member_removed(uow, room_id, user_id, actor_id)
            await uow.commit()
        # The removed user hears it too, then nothing more of the room.
        await self._notifier.emit_to_users(
            member_ids, MEMBER_REMOVED, {"room_id": room_id, "user_id": user_id}
        )
        if self._webhooks is not None:
            self._webhooks.relay_soon()


class TransferOwnership:
    """The owner of a group room makes another member the owner and becomes a member.

    Handing it to yourself changes nothing. Every member hears ``room:owner_changed``.
    """

    def __init__(self, uow: UnitOfWorkFactory, notifier: RealtimeNotifier) -> None:
        self._uow, self._notifier = uow, notifier

    async def __call__(self, actor_id: str, room_id: str, user_id: str) -> RoomDetails:
        async with self._uow() as uow:
            room, actor = await require_member(uow, room_id, actor_id)
            if not actor.is_owner:
                raise Forbidden("only the room's owner may hand it over")
            if user_id == actor_id:
                return RoomDetails(room, await uow.rooms.members(room_id))
            if not is_id(user_id) or await uow.rooms.get_membership(room_id, user_id) is None:
                raise NotFound("member not found")
            if not await uow.rooms.hand_over(room_id, actor_id, user_id):
                raise Conflict("the room changed hands meanwhile")  # raced: nothing committed
            members = await uow.rooms.members(room_id)
            await uow.commit()
        await self._notifier.emit_to_users(
            [m.membership.user_id for m in members],
            OWNER_CHANGED,
            {"room_id": room_id, "user_id": user_id, "previous_owner_id": actor_id},
        )
        return RoomDetails(room, members)


TYPING = "typing"


class RelayTyping:
    """Tell a room's other members that someone is (or stopped) typing. Nothing is stored;
    clients drop a typing indicator that is not refreshed within a few seconds.

    Each call fans out to every member, so with a ``limiter`` a user's calls (every room
    together) are limited by ``rate_rule``; over it the call raises ``RateLimited`` and
    nobody is told anything.
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

    async def __call__(self, user_id: str, room_id: str, is_typing: bool) -> None:
        if self._limiter is not None and self._rate_rule is not None:
            await self._limiter.acquire(user_id, self._rate_rule)
        async with self._uow.reading() as uow:
            await require_member(uow, room_id, user_id)
            others = [uid for uid in await uow.rooms.member_ids(room_id) if uid != user_id]
        await self._notifier.emit_to_users(
            others, TYPING, {"room_id": room_id, "user_id": user_id, "is_typing": is_typing}
        )
