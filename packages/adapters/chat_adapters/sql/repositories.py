"""Repositories on SQLAlchemy Core: statements in, domain dataclasses out."""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Integer, Row, and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import BindParameter

from chat_adapters.sql.tables import (
    UTCDateTime,
    api_keys,
    memberships,
    messages,
    room_removals,
    rooms,
    user_blocks,
    users,
)
from chat_domain.entities import (
    ApiKey,
    Block,
    BlockedUser,
    Member,
    Membership,
    Message,
    Role,
    Room,
    RoomKind,
    RoomSummary,
    Scope,
    User,
)
from chat_domain.errors import NotFound
from chat_domain.ports.storage import (
    ApiKeyRepository,
    BlockRepository,
    MessageRepository,
    RoomListing,
    RoomRepository,
    SeqBlock,
    UserRepository,
)
from chat_domain.ports.system import Clock

# The largest seq the messages.seq column (INTEGER) holds, on every SQL database.
SEQ_COLUMN_MAX = 2**31 - 1


class Executor(Protocol):
    """What a repository needs from its unit of work: statements in its transaction."""

    async def execute(
        self,
        statement: Executable,
        params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> CursorResult[Any]: ...

    async def insert_or_conflict(self, statement: Executable, conflict: str) -> None: ...


# The statements of the message path, built once: building and cache-keying a statement
# costs SQLAlchemy more than SQLite takes to run it. Values go in as bound parameters.
_USER_BY_ID = select(users).where(users.c.id == bindparam("user_id"))
_ROOM_WITH_MEMBERSHIP = (
    select(
        rooms,
        memberships.c.user_id,
        memberships.c.role,
        memberships.c.joined_at,
        memberships.c.delivered_seq,
        memberships.c.read_seq,
    )
    .join(memberships, memberships.c.room_id == rooms.c.id)
    .where(rooms.c.id == bindparam("room_id"), memberships.c.user_id == bindparam("user_id"))
)
_MEMBER_IDS = select(memberships.c.user_id).where(memberships.c.room_id == bindparam("room_id"))
_MESSAGE_BY_ID = select(messages).where(messages.c.id == bindparam("message_id"))
# Joined on the id alone, so the only plan is the primary key's: joined on the room too,
# PostgreSQL planned it through (room_id, seq) on a young table and read every message of
# the room per send. A copy in another room is told apart in Python.
_SEND_CHECK = (
    select(memberships.c.user_id.label("member_id"), messages)
    .select_from(memberships)
    .outerjoin(messages, messages.c.id == bindparam("message_id"))
    .where(
        memberships.c.room_id == bindparam("room_id"),
        memberships.c.user_id == bindparam("sender_id"),
    )
)
_INSERT_MESSAGE = insert(messages)
_NOW = bindparam("now", type_=UTCDateTime())


@functools.lru_cache(maxsize=128)
def _allocate_seqs(count: int, with_members: bool = False) -> Executable:
    """UPDATE rooms r0..r{count-1}, each last_seq += its n, RETURNING id, last_seq (and,
    with members, their user ids joined by commas: ids never hold one)."""
    ids: list[BindParameter[str]] = [bindparam(f"r{i}") for i in range(count)]
    increment = case(
        *((rooms.c.id == ids[i], bindparam(f"n{i}", type_=Integer)) for i in range(count))
    )
    returned: list[Any] = [rooms.c.id, rooms.c.last_seq]
    if with_members:
        # string_agg on PostgreSQL, group_concat on SQLite; NULL for a room with nobody.
        member_ids = (
            select(func.aggregate_strings(memberships.c.user_id, ","))
            .where(memberships.c.room_id == rooms.c.id)
            .correlate(rooms)
            .scalar_subquery()
        )
        returned.append(member_ids.label("member_ids"))
    return (
        update(rooms)
        .where(rooms.c.id.in_(ids))
        .values(
            last_seq=rooms.c.last_seq + increment,
            # Never backwards, should clocks disagree across nodes.
            last_activity_at=case(
                (rooms.c.last_activity_at > _NOW, rooms.c.last_activity_at), else_=_NOW
            ),
        )
        .returning(*returned)
    )


# The batch reads of the store step, one statement per batch size. An "expanding" IN
# parameter is rendered into SQL again at every execution, which costs SQLAlchemy more
# than the query; a statement of n plain parameters compiles once per n.
@functools.lru_cache(maxsize=128)
def _member_ids_of(count: int) -> Executable:
    return select(memberships.c.room_id, memberships.c.user_id).where(
        memberships.c.room_id.in_([bindparam(f"p{i}") for i in range(count)])
    )


@functools.lru_cache(maxsize=128)
def _users_by_id(count: int) -> Executable:
    return select(users).where(users.c.id.in_([bindparam(f"p{i}") for i in range(count)]))


@functools.lru_cache(maxsize=128)
def _messages_by_id(count: int) -> Executable:
    return select(messages).where(messages.c.id.in_([bindparam(f"p{i}") for i in range(count)]))


def _numbered(values: Collection[str]) -> dict[str, str]:
    return {f"p{i}": value for i, value in enumerate(values)}


def _message_row(message: Message) -> dict[str, Any]:
    if message.seq is None:
        raise ValueError("a message is stored with its seq")
    return {
        "id": message.id,
        "room_id": message.room_id,
        "seq": message.seq,
        "sender_id": message.sender_id,
        "body": message.body,
        "client_msg_id": message.client_msg_id,
        "created_at": message.created_at,
        "edited_at": message.edited_at,
        "deleted": message.deleted,
    }


def _user(row: Row[Any]) -> User:
    return User(
        row.id,
        row.username,
        row.display_name,
        row.created_at,
        row.password_hash,
        row.deactivated_at,
        row.session_generation,
    )


def _room(row: Row[Any]) -> Room:
    return Room(row.id, row.name, RoomKind(row.kind), row.created_at, row.last_seq, row.direct_key)


def _membership(row: Row[Any]) -> Membership:
    return Membership(
        row.room_id,
        row.user_id,
        Role(row.role),
        row.joined_at,
        row.delivered_seq,
        row.read_seq,
    )


def _block(row: Row[Any]) -> Block:
    return Block(row.blocker_id, row.blocked_id, row.created_at)


def _message(row: Row[Any]) -> Message:
    return Message(
        row.id,
        row.room_id,
        row.sender_id,
        row.body,
        row.created_at,
        row.client_msg_id,
        row.seq,
        row.edited_at,
        bool(row.deleted),
    )


def _forward(column: Any, value: int) -> Any:
    """``GREATEST(column, value)`` in SQL that SQLite understands too."""
    return case((column < value, value), else_=column)


class SqlAlchemyUserRepository(UserRepository):
    """Users by id and by (lower-case) username."""

    def __init__(self, db: Executor) -> None:
        self._db = db

    async def add(self, user: User) -> None:
        statement = insert(users).values(
            id=user.id,
            username=user.username,
            display_name=user.display_name,
            password_hash=user.password_hash,
            created_at=user.created_at,
            deactivated_at=user.deactivated_at,
            session_generation=user.session_generation,
        )
        await self._db.insert_or_conflict(statement, "username: already taken")

    async def get(self, user_id: str) -> User | None:
        row = (await self._db.execute(_USER_BY_ID, {"user_id": user_id})).first()
        return _user(row) if row else None

    async def get_by_username(self, username: str) -> User | None:
        statement = select(users).where(users.c.username == username.lower())
        row = (await self._db.execute(statement)).first()
        return _user(row) if row else None

    async def search(self, prefix: str, limit: int) -> list[User]:
        # autoescape: "_" is a legal username character and a LIKE wildcard.
        statement = (
            select(users)
            .where(users.c.username.startswith(prefix.lower(), autoescape=True))
            .order_by(users.c.username)
            .limit(limit)
        )
        return [_user(row) for row in await self._db.execute(statement)]

    async def get_many(self, user_ids: Collection[str]) -> dict[str, User]:
        if not user_ids:
            return {}
        statement = _users_by_id(len(user_ids))
        return {
            row.id: _user(row) for row in await self._db.execute(statement, _numbered(user_ids))
        }

    async def deactivate(self, user_id: str, at: datetime) -> User | None:
        return await self._change(user_id, deactivated_at=at)

    async def reactivate(self, user_id: str) -> User | None:
        return await self._change(user_id, deactivated_at=None)

    async def change_password(self, user_id: str, password_hash: str) -> User | None:
        return await self._change(user_id, password_hash=password_hash)

    async def _change(self, user_id: str, **values: Any) -> User | None:
        """Set ``values`` and take the next session generation in one statement, so two
        operators' changes at once cannot lose one."""
        statement = (
            update(users)
            .where(users.c.id == user_id)
            .values(session_generation=users.c.session_generation + 1, **values)
            .returning(*users.c)
        )
        row = (await self._db.execute(statement)).first()
        return _user(row) if row else None


class SqlAlchemyRoomRepository(RoomRepository):
    """Rooms, memberships with their markers, and the per-room sequence; ``clock`` dates
    a room's activity when a message takes its next seq."""

    def __init__(self, db: Executor, clock: Clock) -> None:
        self._db, self._clock = db, clock

    async def add(self, room: Room) -> None:
        statement = insert(rooms).values(
            id=room.id,
            name=room.name,
            kind=room.kind.value,
            created_at=room.created_at,
            last_seq=room.last_seq,
            direct_key=room.direct_key,
        )
        await self._db.insert_or_conflict(statement, "room: the pair already has a direct room")

    async def get(self, room_id: str) -> Room | None:
        row = (await self._db.execute(select(rooms).where(rooms.c.id == room_id))).first()
        return _room(row) if row else None

    async def get_direct(self, direct_key: str) -> Room | None:
        statement = select(rooms).where(rooms.c.direct_key == direct_key)
        row = (await self._db.execute(statement)).first()
        return _room(row) if row else None

    async def add_member(self, membership: Membership) -> None:
        await self._db.execute(
            insert(memberships).values(
                room_id=membership.room_id,
                user_id=membership.user_id,
                role=membership.role.value,
                joined_at=membership.joined_at,
                delivered_seq=membership.delivered_seq,
                read_seq=membership.read_seq,
            )
        )

    async def remove_member(self, room_id: str, user_id: str) -> None:
        await self._db.execute(
            memberships.delete().where(
                memberships.c.room_id == room_id, memberships.c.user_id == user_id
            )
        )

    async def get_membership(self, room_id: str, user_id: str) -> Membership | None:
        statement = select(memberships).where(
            memberships.c.room_id == room_id, memberships.c.user_id == user_id
        )
        row = (await self._db.execute(statement)).first()
        return _membership(row) if row else None

    async def record_removal(self, room_id: str, user_id: str, at: datetime) -> None:
        # Removals are rare: a delete and an insert is simpler than each dialect's upsert.
        await self.forget_removal(room_id, user_id)
        await self._db.execute(
            insert(room_removals).values(room_id=room_id, user_id=user_id, removed_at=at)
        )

    async def forget_removal(self, room_id: str, user_id: str) -> None:
        await self._db.execute(
            room_removals.delete().where(
                room_removals.c.room_id == room_id, room_removals.c.user_id == user_id
            )
        )

    async def was_removed(self, room_id: str, user_id: str) -> bool:
        statement = select(room_removals.c.user_id).where(
            room_removals.c.room_id == room_id, room_removals.c.user_id == user_id
        )
        return (await self._db.execute(statement)).first() is not None

    async def hand_over(self, room_id: str, from_user_id: str, to_user_id: str) -> bool:
        if from_user_id == to_user_id:
            return False
        # Each UPDATE says what it expects: a concurrent hand-over of the same room waits
        # on the owner's row lock, then finds no owner to demote (PostgreSQL re-reads the
        # row under READ COMMITTED; SQLite's BEGIN IMMEDIATE already serialises writers).
        demoted = await self._db.execute(
            update(memberships)
            .where(
                memberships.c.room_id == room_id,
                memberships.c.user_id == from_user_id,
                memberships.c.role == Role.OWNER.value,
            )
            .values(role=Role.MEMBER.value)
        )
        if demoted.rowcount != 1:
            return False
        promoted = await self._db.execute(
            update(memberships)
            .where(memberships.c.room_id == room_id, memberships.c.user_id == to_user_id)
            .values(role=Role.OWNER.value)
        )
        return promoted.rowcount == 1

    async def get_with_membership(
        self, room_id: str, user_id: str
    ) -> tuple[Room, Membership] | None:
        # One round trip on the hot path: every send, sync and history call asks this.
        params = {"room_id": room_id, "user_id": user_id}
        row = (await self._db.execute(_ROOM_WITH_MEMBERSHIP, params)).first()
        if row is None:
            return None
        membership = Membership(
            row.id, row.user_id, Role(row.role), row.joined_at, row.delivered_seq, row.read_seq
        )
        return _room(row), membership

    async def members(self, room_id: str) -> list[Member]:
        # Members who joined together (a new room) list the owner first, then by name.
        statement = (
            select(memberships, users.c.username)
            .join(users, users.c.id == memberships.c.user_id)
            .where(memberships.c.room_id == room_id)
            .order_by(
                memberships.c.joined_at,
                case((memberships.c.role == Role.OWNER.value, 0), else_=1),
                users.c.username,
            )
        )
        rows = await self._db.execute(statement)
        return [Member(_membership(row), row.username) for row in rows]

    async def member_ids(self, room_id: str) -> list[str]:
        return list((await self._db.execute(_MEMBER_IDS, {"room_id": room_id})).scalars())

    async def member_ids_of(self, room_ids: Collection[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        if room_ids:
            statement = _member_ids_of(len(room_ids))
            for row in await self._db.execute(statement, _numbered(room_ids)):
                found.setdefault(row.room_id, []).append(row.user_id)
        return found

    async def summaries_for(self, user_id: str) -> list[RoomSummary]:
        # One query whatever the number of rooms: the last message is the one whose seq is
        # the room's last_seq (seq has no gap), the unread count a correlated count.
        last = messages.alias("last_message")
        unread = (
            select(func.count())
            .select_from(messages)
            .where(
                messages.c.room_id == rooms.c.id,
                messages.c.seq > memberships.c.read_seq,
                messages.c.sender_id != user_id,
            )
            .scalar_subquery()
        )
        activity = func.coalesce(rooms.c.last_activity_at, rooms.c.created_at, type_=UTCDateTime)
        statement = (
            select(
                rooms,
                activity.label("activity_at"),
                unread.label("unread_count"),
                *(column.label(f"m_{column.name}") for column in last.c),
            )
            .select_from(
                memberships.join(rooms, rooms.c.id == memberships.c.room_id).outerjoin(
                    last, and_(last.c.room_id == rooms.c.id, last.c.seq == rooms.c.last_seq)
                )
            )
            .where(memberships.c.user_id == user_id)
            .order_by(activity.desc(), rooms.c.created_at.desc(), rooms.c.id)
        )
        summaries = []
        for row in await self._db.execute(statement):
            last_message = (
                Message(
                    row.m_id,
                    row.m_room_id,
                    row.m_sender_id,
                    row.m_body,
                    row.m_created_at,
                    row.m_client_msg_id,
                    row.m_seq,
                    row.m_edited_at,
                    bool(row.m_deleted),
                )
                if row.m_id is not None
                else None
            )
            summaries.append(
                RoomSummary(_room(row), last_message, int(row.unread_count), row.activity_at)
            )
        return summaries

    async def room_ids_of(self, user_id: str) -> list[str]:
        statement = select(memberships.c.room_id).where(memberships.c.user_id == user_id)
        return list((await self._db.execute(statement)).scalars())

    async def list_recent(self, limit: int) -> list[RoomListing]:
        count = (
            select(func.count())
            .where(memberships.c.room_id == rooms.c.id)
            .scalar_subquery()
            .label("member_count")
        )
        statement = (
            select(rooms, count).order_by(rooms.c.created_at.desc(), rooms.c.id.desc()).limit(limit)
        )
        return [
            RoomListing(_room(row), row.member_count) for row in await self._db.execute(statement)
        ]

    async def contact_ids(self, user_id: str) -> list[str]:
        # A self-join, not a query per room: a user in many rooms connects in one read.
        mine, theirs = memberships.alias("mine"), memberships.alias("theirs")
        statement = (
            select(theirs.c.user_id)
            .distinct()
            .join(mine, mine.c.room_id == theirs.c.room_id)
            .where(mine.c.user_id == user_id, theirs.c.user_id != user_id)
        )
        return list((await self._db.execute(statement)).scalars())

    async def allocate_seqs(self, counts: Mapping[str, int]) -> dict[str, int]:
        # One statement for every room, gapless: the UPDATE locks the rooms' rows until
        # this transaction ends (PostgreSQL row locks; SQLite's BEGIN IMMEDIATE already
        # holds the database), so concurrent stores to one room queue here, and a
        # rollback undoes the increments.
        rows = await self._allocate(counts, with_members=False)
        return {room_id: int(row.last_seq) - counts[room_id] + 1 for room_id, row in rows.items()}

    async def allocate_seqs_with_members(self, counts: Mapping[str, int]) -> dict[str, SeqBlock]:
        rows = await self._allocate(counts, with_members=True)
        return {
            room_id: SeqBlock(
                int(row.last_seq) - counts[room_id] + 1,
                row.member_ids.split(",") if row.member_ids else [],
            )
            for room_id, row in rows.items()
        }

    async def _allocate(self, counts: Mapping[str, int], with_members: bool) -> dict[str, Row[Any]]:
        if any(count < 1 for count in counts.values()):
            raise ValueError("count must be at least 1")
        if not counts:
            return {}
        params: dict[str, Any] = {"now": self._clock.now()}
        for i, (room_id, count) in enumerate(counts.items()):
            params[f"r{i}"], params[f"n{i}"] = room_id, count
        statement = _allocate_seqs(len(counts), with_members)
        rows = {row.id: row for row in await self._db.execute(statement, params)}
        if len(rows) != len(counts):
            raise NotFound("room not found")
        return rows

    async def advance_marker(
        self, room_id: str, user_id: str, *, delivered_seq: int | None, read_seq: int | None
    ) -> Membership | None:
        values: dict[str, Any] = {}
        if delivered_seq is not None:
            values["delivered_seq"] = _forward(memberships.c.delivered_seq, delivered_seq)
        if read_seq is not None:
            values["read_seq"] = _forward(memberships.c.read_seq, read_seq)
        if not values:
            return await self.get_membership(room_id, user_id)
        statement = (
            update(memberships)
            .where(memberships.c.room_id == room_id, memberships.c.user_id == user_id)
            .values(**values)
            .returning(*memberships.c)
        )
        row = (await self._db.execute(statement)).first()
        return _membership(row) if row else None


class SqlAlchemyBlockRepository(BlockRepository):
    """Blocks by (blocker, blocked)."""

    def __init__(self, db: Executor) -> None:
        self._db = db

    async def add(self, block: Block) -> None:
        statement = insert(user_blocks).values(
            blocker_id=block.blocker_id,
            blocked_id=block.blocked_id,
            created_at=block.created_at,
        )
        await self._db.insert_or_conflict(statement, "block: already blocked")

    async def get(self, blocker_id: str, blocked_id: str) -> Block | None:
        statement = select(user_blocks).where(
            user_blocks.c.blocker_id == blocker_id, user_blocks.c.blocked_id == blocked_id
        )
        row = (await self._db.execute(statement)).first()
        return _block(row) if row else None

    async def remove(self, blocker_id: str, blocked_id: str) -> None:
        await self._db.execute(
            user_blocks.delete().where(
                user_blocks.c.blocker_id == blocker_id, user_blocks.c.blocked_id == blocked_id
            )
        )

    async def blocked_by(self, blocker_id: str) -> list[BlockedUser]:
        statement = (
            select(user_blocks, users.c.username)
            .join(users, users.c.id == user_blocks.c.blocked_id)
            .where(user_blocks.c.blocker_id == blocker_id)
            .order_by(user_blocks.c.created_at, users.c.username)
        )
        return [BlockedUser(_block(row), row.username) for row in await self._db.execute(statement)]

    async def involving(self, user_id: str) -> list[Block]:
        # The primary key serves the blocker side, ix_user_blocks_blocked_id the other.
        statement = select(user_blocks).where(
            or_(user_blocks.c.blocker_id == user_id, user_blocks.c.blocked_id == user_id)
        )
        return [_block(row) for row in await self._db.execute(statement)]


class SqlAlchemyMessageRepository(MessageRepository):
    """Messages of rooms, paged by ``seq``."""

    def __init__(self, db: Executor) -> None:
        self._db = db

    async def add(self, message: Message) -> None:
        await self._db.execute(_INSERT_MESSAGE, _message_row(message))

    async def add_many(self, messages: Sequence[Message]) -> None:
        if messages:  # one executemany, not one statement per message
            await self._db.execute(_INSERT_MESSAGE, [_message_row(m) for m in messages])

    async def get(self, message_id: str) -> Message | None:
        row = (await self._db.execute(_MESSAGE_BY_ID, {"message_id": message_id})).first()
        return _message(row) if row else None

    async def check_send(
        self, room_id: str, sender_id: str, message_id: str
    ) -> tuple[bool, Message | None]:
        params = {"room_id": room_id, "sender_id": sender_id, "message_id": message_id}
        row = (await self._db.execute(_SEND_CHECK, params)).first()
        if row is None:
            return False, None
        return True, _message(row) if row.id is not None and row.room_id == room_id else None

    async def get_many(self, message_ids: Collection[str]) -> dict[str, Message]:
        if not message_ids:
            return {}
        rows = await self._db.execute(_messages_by_id(len(message_ids)), _numbered(message_ids))
        return {row.id: _message(row) for row in rows}

    async def erase_before(self, cutoff: datetime, limit: int) -> int:
        # Oldest first through ix_messages_created_at, a bounded batch per statement, so a
        # prune of a big table holds no lock for long.
        due = (
            select(messages.c.id)
            .where(messages.c.created_at < cutoff, messages.c.deleted.is_(False))
            .order_by(messages.c.created_at)
            .limit(limit)
            .scalar_subquery()
        )
        result = await self._db.execute(
            update(messages).where(messages.c.id.in_(due)).values(body="", deleted=True)
        )
        return int(result.rowcount)

    async def update(self, message: Message) -> None:
        # Only what an edit or a delete changes: room, seq, sender and origin are fixed.
        await self._db.execute(
            update(messages)
            .where(messages.c.id == message.id)
            .values(body=message.body, edited_at=message.edited_at, deleted=message.deleted)
        )

    async def page(
        self, room_id: str, *, after_seq: int | None, before_seq: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        statement = select(messages).where(messages.c.room_id == room_id)
        # The seq column is a 32-bit INTEGER on PostgreSQL, which refuses a larger parameter
        # outright; the domain allows cursors up to 2**53-1. No stored seq can be larger than
        # the column, so a cursor beyond it means the same as the column's largest value
        # (after: nothing; before: everything).
        if after_seq is not None:
            statement = statement.where(messages.c.seq > min(after_seq, SEQ_COLUMN_MAX))
        if before_seq is not None and before_seq <= SEQ_COLUMN_MAX:
            statement = statement.where(messages.c.seq < before_seq)
        # One row more than asked tells whether more lie beyond the page.
        if after_seq is not None:
            statement = statement.order_by(messages.c.seq).limit(limit + 1)
        else:
            statement = statement.order_by(messages.c.seq.desc()).limit(limit + 1)
        found = [_message(row) for row in await self._db.execute(statement)]
        has_more = len(found) > limit
        found = found[:limit]
        if after_seq is None:
            found.reverse()
        return found, has_more


def _api_key(row: Row[Any]) -> ApiKey:
    scopes = frozenset(Scope(s) for s in row.scopes.split())
    return ApiKey(row.id, row.name, scopes, row.key_hash, row.created_at, row.revoked_at)


_API_KEY_BY_HASH = select(api_keys).where(api_keys.c.key_hash == bindparam("key_hash"))


class SqlAlchemyApiKeyRepository(ApiKeyRepository):
    """Keys by id, found by their unique hash."""

    def __init__(self, db: Executor) -> None:
        self._db = db

    async def add(self, key: ApiKey) -> None:
        statement = insert(api_keys).values(
            id=key.id,
            name=key.name,
            key_hash=key.key_hash,
            scopes=" ".join(sorted(s.value for s in key.scopes)),
            created_at=key.created_at,
            revoked_at=key.revoked_at,
        )
        await self._db.insert_or_conflict(statement, "API key: already exists")

    async def get_by_hash(self, key_hash: str) -> ApiKey | None:
        row = (await self._db.execute(_API_KEY_BY_HASH, {"key_hash": key_hash})).first()
        return _api_key(row) if row else None

    async def list_all(self) -> list[ApiKey]:
        statement = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        return [_api_key(row) for row in await self._db.execute(statement)]

    async def revoke(self, key_id: str, at: datetime) -> ApiKey | None:
        await self._db.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        row = (await self._db.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
        return _api_key(row) if row else None
