"""In-memory storage: dicts behind the same ports and the same contract as the SQL adapter.

A fast fake for unit tests, not a database: nothing survives the process. Writers are
serialised by one ``asyncio.Lock`` held from a unit's first write to its commit or
rollback, which is what makes ``allocate_seq`` gapless here, as the row lock does in SQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from chat_domain.entities import (
    ApiKey,
    Block,
    BlockedUser,
    Member,
    Membership,
    Message,
    Role,
    Room,
    RoomSummary,
    User,
)
from chat_domain.errors import Conflict, NotFound, Unavailable
from chat_domain.ports.storage import (
    ApiKeyRepository,
    BlockRepository,
    MessageRepository,
    RoomListing,
    RoomRepository,
    SeqBlock,
    UnitOfWork,
    UnitOfWorkFactory,
    UserRepository,
    WebhookEventRepository,
)
from chat_domain.ports.system import Clock
from chat_domain.ports.webhooks import PendingWebhookEvent, PendingWebhookEvents, WebhookEvent


def _utc(at: datetime) -> datetime:
    """Timestamps come back in UTC, as from the SQL adapter; naive ones are refused alike."""
    if at.tzinfo is None:
        raise ValueError("naive datetime: the storage keeps timezone-aware UTC only")
    return at.astimezone(UTC)


# Like SQLite's busy_timeout: a writer that waits this long for another fails, not hangs.
LOCK_TIMEOUT_S = 10.0


@dataclass(slots=True)
class _State:
    """Every table as a dict. Entities are frozen, so a shallow copy is a snapshot."""

    users: dict[str, User] = field(default_factory=dict)
    user_ids_by_name: dict[str, str] = field(default_factory=dict)
    rooms: dict[str, Room] = field(default_factory=dict)
    room_ids_by_direct_key: dict[str, str] = field(default_factory=dict)
    last_activity: dict[str, datetime] = field(default_factory=dict)
    memberships: dict[tuple[str, str], Membership] = field(default_factory=dict)
    messages: dict[str, Message] = field(default_factory=dict)
    message_ids_by_seq: dict[tuple[str, int], str] = field(default_factory=dict)
    # (room_id, user_id) -> when the owner removed them.
    removals: dict[tuple[str, str], datetime] = field(default_factory=dict)
    # (blocker_id, blocked_id) -> the block, in the order made.
    blocks: dict[tuple[str, str], Block] = field(default_factory=dict)
    api_keys: dict[str, ApiKey] = field(default_factory=dict)
    # The webhook events not yet relayed, by position (a dict keeps insertion order).
    webhook_events: dict[int, WebhookEvent] = field(default_factory=dict)
    last_webhook_position: int = 0

    def copy(self) -> _State:
        return _State(
            dict(self.users),
            dict(self.user_ids_by_name),
            dict(self.rooms),
            dict(self.room_ids_by_direct_key),
            dict(self.last_activity),
            dict(self.memberships),
            dict(self.messages),
            dict(self.message_ids_by_seq),
            dict(self.removals),
            dict(self.blocks),
            dict(self.api_keys),
            dict(self.webhook_events),
            self.last_webhook_position,
        )


class InMemoryUnitOfWork(UnitOfWork):
    """Reads see committed data until the first write; from then on the unit works on a
    private copy taken under the writers' lock, published on commit, dropped on rollback.
    A reading unit refuses to write, as the port says."""

    def __init__(self, factory: InMemoryUnitOfWorkFactory, read_only: bool = False) -> None:
        self._factory, self._read_only = factory, read_only
        self._work: _State | None = None
        self.clock = factory.clock
        self.users = InMemoryUserRepository(self)
        self.rooms = InMemoryRoomRepository(self)
        self.messages = InMemoryMessageRepository(self)
        self.blocks = InMemoryBlockRepository(self)
        self.api_keys = InMemoryApiKeyRepository(self)
        self.webhook_events = InMemoryWebhookEventRepository(self)

    def read_state(self) -> _State:
        return self._work if self._work is not None else self._factory.state

    async def write_state(self) -> _State:
        if self._read_only:
            raise RuntimeError("a reading unit of work cannot write")
        if self._work is None:
            try:
                async with asyncio.timeout(LOCK_TIMEOUT_S):
                    await self._factory.lock.acquire()
            except TimeoutError as exc:
                raise Unavailable("storage busy: another unit of work holds the lock") from exc
            self._work = self._factory.state.copy()
        return self._work

    def _release(self) -> None:
        self._work = None
        self._factory.lock.release()

    async def commit(self) -> None:
        if self._read_only:
            raise RuntimeError("a reading unit of work cannot commit")
        if self._work is not None:
            self._factory.state = self._work
            self._release()

    async def rollback(self) -> None:
        if self._work is not None:
            self._release()


class InMemoryUnitOfWorkFactory(UnitOfWorkFactory):
    """In-memory storage entry point; each instance is an empty database. ``clock`` dates
    a room's activity when a message takes its next seq."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.state = _State()
        self.lock = asyncio.Lock()
        self.relay_lock = asyncio.Lock()  # InMemoryPendingWebhookEvents' lease

    def __call__(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self)

    def reading(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self, read_only=True)

    async def check(self) -> None:
        return None  # always there


class InMemoryUserRepository(UserRepository):
    """Users by id and by (lower-case) username."""

    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def add(self, user: User) -> None:
        state = await self._uow.write_state()
        if user.username in state.user_ids_by_name or user.id in state.users:
            raise Conflict("username: already taken")
        deactivated_at = None if user.deactivated_at is None else _utc(user.deactivated_at)
        user = replace(user, created_at=_utc(user.created_at), deactivated_at=deactivated_at)
        state.users[user.id] = user
        state.user_ids_by_name[user.username] = user.id

    async def get(self, user_id: str) -> User | None:
        return self._uow.read_state().users.get(user_id)

    async def get_by_username(self, username: str) -> User | None:
        state = self._uow.read_state()
        user_id = state.user_ids_by_name.get(username.lower())
        return state.users.get(user_id) if user_id else None

    async def search(self, prefix: str, limit: int) -> list[User]:
        state = self._uow.read_state()
        names = sorted(n for n in state.user_ids_by_name if n.startswith(prefix.lower()))
        return [state.users[state.user_ids_by_name[n]] for n in names[:limit]]

    async def get_many(self, user_ids: Collection[str]) -> dict[str, User]:
        users = self._uow.read_state().users
        return {user_id: users[user_id] for user_id in user_ids if user_id in users}

    async def deactivate(self, user_id: str, at: datetime) -> User | None:
        return await self._change(user_id, deactivated_at=_utc(at))

    async def reactivate(self, user_id: str) -> User | None:
        return await self._change(user_id, deactivated_at=None)

    async def change_password(self, user_id: str, password_hash: str) -> User | None:
        return await self._change(user_id, password_hash=password_hash)

    async def _change(self, user_id: str, **changes: Any) -> User | None:
        """The user with ``changes`` and their next session generation, stored."""
        state = await self._uow.write_state()
        user = state.users.get(user_id)
        if user is None:
            return None
        user = replace(user, session_generation=user.session_generation + 1, **changes)
        state.users[user_id] = user
        return user


class InMemoryRoomRepository(RoomRepository):
    """Rooms, memberships with their markers, and the per-room sequence."""

    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def add(self, room: Room) -> None:
        state = await self._uow.write_state()
        if room.id in state.rooms or (
            room.direct_key is not None and room.direct_key in state.room_ids_by_direct_key
        ):
            raise Conflict("room: the pair already has a direct room")
        room = replace(room, created_at=_utc(room.created_at))
        state.rooms[room.id] = room
        if room.direct_key is not None:
            state.room_ids_by_direct_key[room.direct_key] = room.id

    async def get(self, room_id: str) -> Room | None:
        return self._uow.read_state().rooms.get(room_id)

    async def get_direct(self, direct_key: str) -> Room | None:
        state = self._uow.read_state()
        room_id = state.room_ids_by_direct_key.get(direct_key)
        return state.rooms.get(room_id) if room_id else None

    async def add_member(self, membership: Membership) -> None:
        state = await self._uow.write_state()
        key = (membership.room_id, membership.user_id)
        # The SQL adapter's primary and foreign keys say the same.
        if key in state.memberships:
            raise Conflict("member: already in the room")
        if membership.room_id not in state.rooms or membership.user_id not in state.users:
            raise Conflict("member: unknown room or user")
        state.memberships[key] = replace(membership, joined_at=_utc(membership.joined_at))

    async def remove_member(self, room_id: str, user_id: str) -> None:
        state = await self._uow.write_state()
        state.memberships.pop((room_id, user_id), None)

    async def get_membership(self, room_id: str, user_id: str) -> Membership | None:
        return self._uow.read_state().memberships.get((room_id, user_id))

    async def record_removal(self, room_id: str, user_id: str, at: datetime) -> None:
        state = await self._uow.write_state()
        # The SQL adapter's foreign keys say the same.
        if room_id not in state.rooms or user_id not in state.users:
            raise Conflict("removal: unknown room or user")
        state.removals[(room_id, user_id)] = _utc(at)

    async def forget_removal(self, room_id: str, user_id: str) -> None:
        state = await self._uow.write_state()
        state.removals.pop((room_id, user_id), None)

    async def was_removed(self, room_id: str, user_id: str) -> bool:
        return (room_id, user_id) in self._uow.read_state().removals

    async def hand_over(self, room_id: str, from_user_id: str, to_user_id: str) -> bool:
        state = await self._uow.write_state()
        owner = state.memberships.get((room_id, from_user_id))
        heir = state.memberships.get((room_id, to_user_id))
        if (
            owner is None
            or heir is None
            or owner.role is not Role.OWNER
            or from_user_id == to_user_id
        ):
            return False
        state.memberships[(room_id, from_user_id)] = replace(owner, role=Role.MEMBER)
        state.memberships[(room_id, to_user_id)] = replace(heir, role=Role.OWNER)
        return True

    async def get_with_membership(
        self, room_id: str, user_id: str
    ) -> tuple[Room, Membership] | None:
        state = self._uow.read_state()
        membership = state.memberships.get((room_id, user_id))
        room = state.rooms.get(room_id) if membership else None
        return (room, membership) if room and membership else None

    async def members(self, room_id: str) -> list[Member]:
        state = self._uow.read_state()
        members = [
            Member(m, state.users[m.user_id].username)
            for (rid, _), m in state.memberships.items()
            if rid == room_id
        ]
        # Same order as SQL: by join time, the owner first among equals, then by name.
        members.sort(
            key=lambda m: (m.membership.joined_at, m.membership.role is not Role.OWNER, m.username)
        )
        return members

    async def member_ids(self, room_id: str) -> list[str]:
        return [uid for (rid, uid) in self._uow.read_state().memberships if rid == room_id]

    async def member_ids_of(self, room_ids: Collection[str]) -> dict[str, list[str]]:
        wanted, found = set(room_ids), dict[str, list[str]]()
        for rid, uid in self._uow.read_state().memberships:
            if rid in wanted:
                found.setdefault(rid, []).append(uid)
        return found

    async def summaries_for(self, user_id: str) -> list[RoomSummary]:
        state = self._uow.read_state()
        summaries = []
        for (room_id, uid), membership in state.memberships.items():
            if uid != user_id:
                continue
            room = state.rooms[room_id]
            last_id = state.message_ids_by_seq.get((room_id, room.last_seq))
            unread = sum(
                1
                for m in state.messages.values()
                if m.room_id == room_id
                and m.seq is not None
                and m.seq > membership.read_seq
                and m.sender_id != user_id
            )
            summaries.append(
                RoomSummary(
                    room,
                    state.messages[last_id] if last_id else None,
                    unread,
                    state.last_activity.get(room_id, room.created_at),
                )
            )
        # Most recent activity first, newest room first among equals, then by id (stable sorts).
        summaries.sort(key=lambda s: s.room.id)
        summaries.sort(key=lambda s: (s.last_activity_at, s.room.created_at), reverse=True)
        return summaries

    async def room_ids_of(self, user_id: str) -> list[str]:
        return [rid for (rid, uid) in self._uow.read_state().memberships if uid == user_id]

    async def contact_ids(self, user_id: str) -> list[str]:
        memberships = self._uow.read_state().memberships
        rooms = {rid for (rid, uid) in memberships if uid == user_id}
        return list(
            dict.fromkeys(uid for (rid, uid) in memberships if rid in rooms and uid != user_id)
        )

    async def list_recent(self, limit: int) -> list[RoomListing]:
        state = self._uow.read_state()
        counts: dict[str, int] = {}
        for room_id, _ in state.memberships:
            counts[room_id] = counts.get(room_id, 0) + 1
        newest = sorted(state.rooms.values(), key=lambda r: (r.created_at, r.id), reverse=True)
        return [RoomListing(room, counts.get(room.id, 0)) for room in newest[:limit]]

    async def allocate_seqs(self, counts: Mapping[str, int]) -> dict[str, int]:
        if any(count < 1 for count in counts.values()):
            raise ValueError("count must be at least 1")
        # Holding the writers' lock until commit or rollback is what serialises a room.
        state = await self._uow.write_state()
        if any(room_id not in state.rooms for room_id in counts):
            raise NotFound("room not found")
        firsts: dict[str, int] = {}
        now = self._uow.clock.now()
        for room_id, count in counts.items():
            room = state.rooms[room_id]
            firsts[room_id] = room.last_seq + 1
            state.rooms[room_id] = replace(room, last_seq=room.last_seq + count)
            state.last_activity[room_id] = max(state.last_activity.get(room_id, now), now)
        return firsts

    async def allocate_seqs_with_members(self, counts: Mapping[str, int]) -> dict[str, SeqBlock]:
        firsts = await self.allocate_seqs(counts)
        members = await self.member_ids_of(firsts)
        return {r: SeqBlock(first, members.get(r, [])) for r, first in firsts.items()}

    async def advance_marker(
        self, room_id: str, user_id: str, *, delivered_seq: int | None, read_seq: int | None
    ) -> Membership | None:
        if delivered_seq is None and read_seq is None:
            return await self.get_membership(room_id, user_id)
        state = await self._uow.write_state()
        membership = state.memberships.get((room_id, user_id))
        if membership is None:
            return None
        if delivered_seq is not None:
            membership = replace(
                membership, delivered_seq=max(membership.delivered_seq, delivered_seq)
            )
        if read_seq is not None:
            membership = replace(membership, read_seq=max(membership.read_seq, read_seq))
        state.memberships[(room_id, user_id)] = membership
        return membership


class InMemoryBlockRepository(BlockRepository):
    """Blocks by (blocker, blocked)."""

    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def add(self, block: Block) -> None:
        state = await self._uow.write_state()
        key = (block.blocker_id, block.blocked_id)
        # The SQL adapter's primary and foreign keys say the same.
        if key in state.blocks:
            raise Conflict("block: already blocked")
        if block.blocker_id not in state.users or block.blocked_id not in state.users:
            raise Conflict("block: unknown user")
        state.blocks[key] = replace(block, created_at=_utc(block.created_at))

    async def get(self, blocker_id: str, blocked_id: str) -> Block | None:
        return self._uow.read_state().blocks.get((blocker_id, blocked_id))

    async def remove(self, blocker_id: str, blocked_id: str) -> None:
        state = await self._uow.write_state()
        state.blocks.pop((blocker_id, blocked_id), None)

    async def blocked_by(self, blocker_id: str) -> list[BlockedUser]:
        state = self._uow.read_state()
        found = [
            BlockedUser(block, state.users[block.blocked_id].username)
            for (blocker, _), block in state.blocks.items()
            if blocker == blocker_id
        ]
        # Same order as SQL: oldest first, then by username.
        found.sort(key=lambda b: (b.block.created_at, b.username))
        return found

    async def involving(self, user_id: str) -> list[Block]:
        return [b for key, b in self._uow.read_state().blocks.items() if user_id in key]


class InMemoryMessageRepository(MessageRepository):
    """Messages of rooms, paged by ``seq``."""

    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def add(self, message: Message) -> None:
        if message.seq is None:
            raise ValueError("a message is stored with its seq")
        state = await self._uow.write_state()
        key = (message.room_id, message.seq)
        # The SQL adapter's primary, unique and foreign keys say the same.
        if message.id in state.messages or key in state.message_ids_by_seq:
            raise Conflict("message: id or seq already stored")
        if message.room_id not in state.rooms or message.sender_id not in state.users:
            raise Conflict("message: unknown room or sender")
        state.messages[message.id] = replace(
            message,
            created_at=_utc(message.created_at),
            edited_at=_utc(message.edited_at) if message.edited_at else None,
        )
        state.message_ids_by_seq[key] = message.id

    async def add_many(self, messages: Sequence[Message]) -> None:
        for message in messages:
            await self.add(message)

    async def get(self, message_id: str) -> Message | None:
        return self._uow.read_state().messages.get(message_id)

    async def check_send(
        self, room_id: str, sender_id: str, message_id: str
    ) -> tuple[bool, Message | None]:
        state = self._uow.read_state()
        if (room_id, sender_id) not in state.memberships:
            return False, None
        stored = state.messages.get(message_id)
        return True, stored if stored is not None and stored.room_id == room_id else None

    async def get_many(self, message_ids: Collection[str]) -> dict[str, Message]:
        stored = self._uow.read_state().messages
        return {mid: stored[mid] for mid in message_ids if mid in stored}

    async def erase_before(self, cutoff: datetime, limit: int) -> int:
        state = await self._uow.write_state()
        due = sorted(
            (m for m in state.messages.values() if m.created_at < cutoff and not m.deleted),
            key=lambda m: (m.created_at, m.id),
        )[:limit]
        for message in due:
            state.messages[message.id] = replace(message, body="", deleted=True)
        return len(due)

    async def update(self, message: Message) -> None:
        state = await self._uow.write_state()
        stored = state.messages.get(message.id)
        if stored is None:
            return
        # Only what an edit or a delete changes, as in SQL.
        state.messages[message.id] = replace(
            stored,
            body=message.body,
            edited_at=_utc(message.edited_at) if message.edited_at else None,
            deleted=message.deleted,
        )

    async def page(
        self, room_id: str, *, after_seq: int | None, before_seq: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        state = self._uow.read_state()
        seqs = sorted(
            seq
            for (rid, seq) in state.message_ids_by_seq
            if rid == room_id
            and (after_seq is None or seq > after_seq)
            and (before_seq is None or seq < before_seq)
        )
        if after_seq is not None:
            chosen, has_more = seqs[:limit], len(seqs) > limit
        else:
            chosen, has_more = seqs[-limit:] if limit else [], len(seqs) > limit
        return [state.messages[state.message_ids_by_seq[(room_id, s)]] for s in chosen], has_more


class InMemoryApiKeyRepository(ApiKeyRepository):
    """Keys by id; found by hash with a scan (an operator has a handful of keys)."""

    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def add(self, key: ApiKey) -> None:
        state = await self._uow.write_state()
        # The SQL adapter's primary key and unique hash say the same.
        if key.id in state.api_keys or any(
            k.key_hash == key.key_hash for k in state.api_keys.values()
        ):
            raise Conflict("API key: already exists")
        state.api_keys[key.id] = replace(key, created_at=_utc(key.created_at))

    async def get_by_hash(self, key_hash: str) -> ApiKey | None:
        found = (k for k in self._uow.read_state().api_keys.values() if k.key_hash == key_hash)
        return next(found, None)

    async def list_all(self) -> list[ApiKey]:
        return sorted(self._uow.read_state().api_keys.values(), key=lambda k: (k.created_at, k.id))

    async def revoke(self, key_id: str, at: datetime) -> ApiKey | None:
        key = self._uow.read_state().api_keys.get(key_id)
        if key is None:
            return None
        if key.revoked_at is None:
            key = replace(key, revoked_at=_utc(at))
            (await self._uow.write_state()).api_keys[key_id] = key
        return key


class InMemoryWebhookEventRepository(WebhookEventRepository):
    """Events numbered in the unit's private copy: a rollback drops them and their numbers."""

    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def add(self, events: Sequence[WebhookEvent]) -> None:
        state = await self._uow.write_state()
        for event in events:
            state.last_webhook_position += 1
            state.webhook_events[state.last_webhook_position] = event


class InMemoryPendingWebhookEvents(PendingWebhookEvents):
    """The relay's side of ``storage``'s recorded webhook events. One process holds the
    data, so an ``asyncio.Lock`` of the storage is the relays' lease."""

    def __init__(self, storage: InMemoryUnitOfWorkFactory) -> None:
        self._storage = storage
        self._relaying = storage.relay_lock

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[bool]:
        if self._relaying.locked():
            yield False
            return
        async with self._relaying:
            yield True

    async def oldest(self, limit: int) -> list[PendingWebhookEvent]:
        events = self._storage.state.webhook_events  # committed only
        return [PendingWebhookEvent(p, e) for p, e in list(events.items())[:limit]]

    async def remove(self, positions: Collection[int]) -> None:
        uow = self._storage()
        async with uow:
            state = await uow.write_state()
            for position in positions:
                state.webhook_events.pop(position, None)
            await uow.commit()

    async def count(self) -> int:
        return len(self._storage.state.webhook_events)
