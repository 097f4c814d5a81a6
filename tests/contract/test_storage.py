"""Contract of the storage port: one set of asserts, run on every adapter.

``memory`` always runs; ``sqlite`` runs on a file in ``tmp_path``; ``postgres`` runs on a
database created for the test session (skipped on a laptop without PostgreSQL, a failure
in CI). Each test gets its own engine, because an ``AsyncEngine`` belongs to one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from chat_adapters.memory.storage import InMemoryUnitOfWorkFactory
from chat_adapters.memory.system import FixedClock
from chat_adapters.sql.checkpoints import (
    BACKSTOP_AUTOCHECKPOINT_PAGES,
    WalCheckpointer,
    sqlite_file,
)
from chat_adapters.sql.engine import create_engine
from chat_adapters.sql.migrate import migrate
from chat_adapters.sql.tables import metadata
from chat_adapters.sql.unit_of_work import SqlAlchemyUnitOfWorkFactory
from chat_domain.entities import (
    Block,
    Membership,
    Message,
    Role,
    Room,
    RoomKind,
    User,
    normalise_body,
    normalise_display_name,
    normalise_room_name,
)
from chat_domain.errors import Conflict, NotFound, Unavailable
from chat_domain.ports.storage import UnitOfWorkFactory
from tests.support.services import POSTGRES, require
from tests.support.text_corpus import (
    ACCEPTED_BODIES,
    ACCEPTED_NAMES,
    LONGEST_DISPLAY_NAME,
    LONGEST_ROOM_NAME,
)

T = TypeVar("T")
# Fixed, whole-millisecond times in the past: every backend must give them back unchanged.
T0 = datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)


# --- fixtures -----------------------------------------------------------------------------


def _in_thread(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on a loop of its own: session fixtures may be set up inside a test's."""
    result: list[T] = []
    errors: list[BaseException] = []

    async def main() -> None:
        result.append(await make())

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated database for this test session, dropped at the end."""
    require(POSTGRES)
    admin = make_url(POSTGRES.url)
    admin_dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"chat_test_{secrets.token_hex(6)}"
    url = admin.set(drivername="postgresql+asyncpg", database=name).render_as_string(
        hide_password=False
    )

    async def admin_sql(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def create() -> None:
        await admin_sql(f'CREATE DATABASE "{name}"')
        engine = create_engine(url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    _in_thread(create)
    try:
        yield url
    finally:
        _in_thread(lambda: admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _sql_engine(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncEngine:
    if kind == "sqlite":
        # A directory that does not exist yet: the engine must create it.
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/var/chat.db")
        await migrate(engine)
        return engine
    engine = create_engine(request.getfixturevalue("postgres_url"))
    async with engine.begin() as conn:
        await conn.execute(
            text("TRUNCATE user_blocks, room_removals, messages, memberships, rooms, users")
        )
    return engine


SQL_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture
def clock() -> FixedClock:
    """The storage's clock (room activity): it moves only when a test moves it."""
    return FixedClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture(params=["memory", *SQL_BACKENDS])
async def storage(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FixedClock
) -> AsyncIterator[UnitOfWorkFactory]:
    if request.param == "memory":
        yield InMemoryUnitOfWorkFactory(clock)
        return
    engine = await _sql_engine(request.param, request, tmp_path)
    try:
        yield SqlAlchemyUnitOfWorkFactory(engine, clock)
    finally:
        await engine.dispose()


@pytest.fixture(params=SQL_BACKENDS)
async def sql_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = await _sql_engine(request.param, request, tmp_path)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def postgres_engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    engine = await _sql_engine("postgres", request, tmp_path)
    try:
        yield engine
    finally:
        await engine.dispose()


# --- helpers ------------------------------------------------------------------------------


def some(value: T | None) -> T:
    assert value is not None
    return value


def new_id() -> str:
    return str(uuid.uuid4())


def make_user(username: str, at: datetime = T0) -> User:
    return User(new_id(), username, username.title(), at, "$argon2id$not-a-real-hash")


def make_room(name: str = "general", at: datetime = T0, direct_key: str | None = None) -> Room:
    kind = RoomKind.DIRECT if direct_key else RoomKind.GROUP
    return Room(new_id(), name, kind, at, direct_key=direct_key)


async def add_users(storage: UnitOfWorkFactory, *names: str) -> list[User]:
    users = [make_user(name) for name in names]
    async with storage() as uow:
        for user in users:
            await uow.users.add(user)
        await uow.commit()
    return users


async def add_room(
    storage: UnitOfWorkFactory, owner: User, *others: User, at: datetime = T0
) -> Room:
    room = make_room(at=at)
    async with storage() as uow:
        await uow.rooms.add(room)
        await uow.rooms.add_member(Membership(room.id, owner.id, Role.OWNER, at))
        for other in others:
            await uow.rooms.add_member(Membership(room.id, other.id, Role.MEMBER, at))
        await uow.commit()
    return room


async def store(storage: UnitOfWorkFactory, room: Room, sender: User, body: str) -> Message:
    """What StoreMessage does: look for the id, take the next seq, insert, commit."""
    message_id = new_id()
    async with storage() as uow:
        assert await uow.messages.get(message_id) is None
        seq = await uow.rooms.allocate_seq(room.id)
        message = Message(message_id, room.id, sender.id, body, T0, f"c-{body}", seq=seq)
        await uow.messages.add(message)
        await uow.rooms.member_ids(room.id)
        await uow.commit()
    return message


async def read(storage: UnitOfWorkFactory, fn: Callable[[Any], Awaitable[T]]) -> T:
    async with storage() as uow:
        return await fn(uow)


# --- users --------------------------------------------------------------------------------


async def test_user_add_get_and_get_by_username(storage: UnitOfWorkFactory) -> None:
    (alice,) = await add_users(storage, "alice")
    async with storage() as uow:
        got = await uow.users.get(alice.id)
        assert got == alice
        assert got.password_hash == alice.password_hash
        assert got.created_at.utcoffset() == timedelta(0)
        assert await uow.users.get_by_username("alice") == alice
        assert await uow.users.get(new_id()) is None
        assert await uow.users.get_by_username("nobody") is None


async def test_user_timestamps_come_back_in_utc(storage: UnitOfWorkFactory) -> None:
    paris = timedelta(hours=1)
    user = make_user("zoe", at=T0.astimezone(timezone(paris)))
    async with storage() as uow:
        await uow.users.add(user)
        await uow.commit()
    got = await read(storage, lambda uow: uow.users.get(user.id))
    assert got.created_at == T0
    assert got.created_at.utcoffset() == timedelta(0)


async def test_taken_username_is_a_conflict_and_the_unit_stays_usable(
    storage: UnitOfWorkFactory,
) -> None:
    await add_users(storage, "alice")
    bob = make_user("bob")
    async with storage() as uow:
        with pytest.raises(Conflict):
            await uow.users.add(make_user("alice"))
        await uow.users.add(bob)  # the failed insert did not spoil the transaction
        await uow.commit()
    assert await read(storage, lambda uow: uow.users.get(bob.id)) == bob


async def test_search_by_prefix_in_username_order_with_limit(storage: UnitOfWorkFactory) -> None:
    await add_users(storage, "bobcat", "alice", "bob", "b_x", "bzz", "bobby")
    async with storage() as uow:
        found = await uow.users.search("bob", 10)
        assert [u.username for u in found] == ["bob", "bobby", "bobcat"]
        assert [u.username for u in await uow.users.search("bob", 2)] == ["bob", "bobby"]
        # "_" is literal, not a LIKE wildcard.
        assert [u.username for u in await uow.users.search("b_", 10)] == ["b_x"]
        assert await uow.users.search("zzz", 10) == []
        assert len(await uow.users.search("", 4)) == 4


# --- rooms and members --------------------------------------------------------------------


async def test_room_add_and_get(storage: UnitOfWorkFactory) -> None:
    room = make_room("general")
    async with storage() as uow:
        await uow.rooms.add(room)
        await uow.commit()
    async with storage() as uow:
        got = await uow.rooms.get(room.id)
        assert got == room
        assert got.kind is RoomKind.GROUP
        assert got.last_seq == 0
        assert await uow.rooms.get(new_id()) is None


async def test_rooms_listed_newest_first_with_member_counts(storage: UnitOfWorkFactory) -> None:
    # Later than any other test's rooms (the PostgreSQL database is shared by the session).
    base = datetime(2999, 1, 1, tzinfo=UTC) + timedelta(minutes=uuid.uuid4().int % 100_000)
    alice, bob, carol = await add_users(storage, *(f"lister{new_id()[:8]}" for _ in range(3)))
    oldest = await add_room(storage, alice, at=base)
    middle = await add_room(storage, alice, bob, carol, at=base + timedelta(seconds=1))
    newest = await add_room(storage, bob, carol, at=base + timedelta(seconds=2))
    listing = await read(storage, lambda uow: uow.rooms.list_recent(3))
    assert [(item.room.id, item.member_count) for item in listing] == [
        (newest.id, 2),
        (middle.id, 3),
        (oldest.id, 1),
    ]
    assert listing[0].room == newest
    assert len(await read(storage, lambda uow: uow.rooms.list_recent(2))) == 2


async def test_erase_before_tombstones_the_oldest_in_batches(storage: UnitOfWorkFactory) -> None:
    alice, *_ = await add_users(storage, f"pruner{new_id()[:8]}")
    room = await add_room(storage, alice)
    # Older than any other test's messages (the PostgreSQL database is shared by the session).
    ancient = datetime(1971, 1, 1, tzinfo=UTC)
    kept = Message(new_id(), room.id, alice.id, "kept", T0 + timedelta(days=1), None, seq=4)
    old = [
        Message(
            new_id(), room.id, alice.id, f"old {i}", ancient + timedelta(minutes=i), None, seq=i + 1
        )
        for i in range(3)
    ]
    async with storage() as uow:
        await uow.messages.add_many([*old, kept])
        await uow.commit()
    cutoff = ancient + timedelta(days=1)
    async with storage() as uow:
        assert await uow.messages.erase_before(cutoff, 2) == 2
        await uow.commit()
    async with storage() as uow:
        got = await uow.messages.get_many([m.id for m in [*old, kept]])
    assert [(got[m.id].body, got[m.id].deleted) for m in old] == [
        ("", True),
        ("", True),
        ("old 2", False),
    ]
    async with storage() as uow:
        assert await uow.messages.erase_before(cutoff, 2) == 1
        assert await uow.messages.erase_before(cutoff, 2) == 0  # tombstones are not counted
        await uow.commit()
    async with storage() as uow:
        got = await uow.messages.get_many([m.id for m in [*old, kept]])
    assert [got[m.id].seq for m in old] == [1, 2, 3]  # the seqs stay: no gap
    assert got[kept.id].body == "kept" and not got[kept.id].deleted


async def test_members_with_usernames_by_join_time(storage: UnitOfWorkFactory) -> None:
    zed, carol, bob, dan = await add_users(storage, "zed", "carol", "bob", "dan")
    room = make_room()
    async with storage() as uow:
        await uow.rooms.add(room)
        await uow.rooms.add_member(
            Membership(room.id, bob.id, Role.MEMBER, T0 + timedelta(seconds=5))
        )
        # Joined together (a new room): the owner comes first, then by username.
        await uow.rooms.add_member(Membership(room.id, carol.id, Role.MEMBER, T0))
        await uow.rooms.add_member(Membership(room.id, zed.id, Role.OWNER, T0))
        await uow.commit()
    async with storage() as uow:
        members = await uow.rooms.members(room.id)
        assert [m.username for m in members] == ["zed", "carol", "bob"]
        assert members[0].membership == Membership(room.id, zed.id, Role.OWNER, T0)
        assert members[0].membership.is_owner
        assert members[2].membership.joined_at == T0 + timedelta(seconds=5)
        assert sorted(await uow.rooms.member_ids(room.id)) == sorted([zed.id, carol.id, bob.id])
        assert await uow.rooms.get_membership(room.id, carol.id) == Membership(
            room.id, carol.id, Role.MEMBER, T0
        )
        assert await uow.rooms.get_membership(room.id, dan.id) is None
        stored_room = await uow.rooms.get(room.id)
        assert await uow.rooms.get_with_membership(room.id, carol.id) == (
            stored_room,
            Membership(room.id, carol.id, Role.MEMBER, T0),
        )
        assert await uow.rooms.get_with_membership(room.id, dan.id) is None
        assert await uow.rooms.get_with_membership(new_id(), carol.id) is None
        assert await uow.rooms.room_ids_of(carol.id) == [room.id]
        assert await uow.rooms.room_ids_of(dan.id) == []
        assert sorted(await uow.rooms.contact_ids(carol.id)) == sorted([zed.id, bob.id])
        assert await uow.rooms.contact_ids(dan.id) == []

    async with storage() as uow:
        await uow.rooms.remove_member(room.id, carol.id)
        await uow.commit()
    async with storage() as uow:
        assert [m.username for m in await uow.rooms.members(room.id)] == ["zed", "bob"]
        assert await uow.rooms.get_membership(room.id, carol.id) is None
        assert await uow.rooms.room_ids_of(carol.id) == []
        assert await uow.rooms.members(new_id()) == []


async def test_adding_a_member_twice_is_a_conflict(storage: UnitOfWorkFactory) -> None:
    alice, bob = await add_users(storage, "alice", "bob")
    room = await add_room(storage, alice, bob)
    async with storage() as uow:
        with pytest.raises(Conflict):
            await uow.rooms.add_member(Membership(room.id, bob.id, Role.MEMBER, T0))


async def test_direct_room_by_key_and_one_per_pair(storage: UnitOfWorkFactory) -> None:
    alice, bob = await add_users(storage, "alice", "bob")
    key = Room.direct_key_for(alice.id, bob.id)
    direct = make_room("", direct_key=key)
    async with storage() as uow:
        await uow.rooms.add(direct)
        # Group rooms have no key: any number of them.
        await uow.rooms.add(make_room("one"))
        await uow.rooms.add(make_room("two"))
        await uow.commit()
    async with storage() as uow:
        got = await uow.rooms.get_direct(Room.direct_key_for(bob.id, alice.id))
        assert got == direct
        assert got.kind is RoomKind.DIRECT
        assert await uow.rooms.get_direct(Room.direct_key_for(alice.id, new_id())) is None
    async with storage() as uow:
        with pytest.raises(Conflict):
            await uow.rooms.add(make_room("", direct_key=key))


# --- the per-room sequence ----------------------------------------------------------------


async def test_allocate_seq_is_gapless_and_a_rollback_frees_the_number(
    storage: UnitOfWorkFactory,
) -> None:
    room = make_room()
    other = make_room("other")
    async with storage() as uow:
        await uow.rooms.add(room)
        await uow.rooms.add(other)
        assert [await uow.rooms.allocate_seq(room.id) for _ in range(3)] == [1, 2, 3]
        assert await uow.rooms.allocate_seq(other.id) == 1  # each room counts alone
        await uow.commit()
    async with storage() as uow:
        assert await uow.rooms.allocate_seq(room.id) == 4
        # left without commit
    async with storage() as uow:
        assert await uow.rooms.allocate_seq(room.id) == 4
        await uow.rollback()
        assert await uow.rooms.allocate_seq(room.id) == 4
        await uow.commit()
    async with storage() as uow:
        assert some(await uow.rooms.get(room.id)).last_seq == 4
        with pytest.raises(NotFound):
            await uow.rooms.allocate_seq(new_id())


async def test_allocate_seq_takes_a_block_and_returns_its_first(
    storage: UnitOfWorkFactory,
) -> None:
    room = make_room()
    async with storage() as uow:
        await uow.rooms.add(room)
        assert await uow.rooms.allocate_seq(room.id, 3) == 1  # 1, 2, 3
        assert await uow.rooms.allocate_seq(room.id) == 4
        assert await uow.rooms.allocate_seq(room.id, 2) == 5  # 5, 6
        await uow.commit()
    async with storage() as uow:
        assert some(await uow.rooms.get(room.id)).last_seq == 6
        with pytest.raises(ValueError):
            await uow.rooms.allocate_seq(room.id, 0)


@pytest.mark.timeout(60)
async def test_concurrent_stores_in_one_room_get_1_to_n(storage: UnitOfWorkFactory) -> None:
    alice, bob = await add_users(storage, "alice", "bob")
    room = await add_room(storage, alice, bob)
    senders = [alice, bob]
    stored = await asyncio.gather(
        *(store(storage, room, senders[i % 2], f"m{i}") for i in range(50))
    )
    assert sorted(some(m.seq) for m in stored) == list(range(1, 51))
    async with storage() as uow:
        page, has_more = await uow.messages.page(room.id, after_seq=0, before_seq=None, limit=100)
        assert not has_more
        assert [m.seq for m in page] == list(range(1, 51))
        assert {m.id for m in page} == {m.id for m in stored}
        assert some(await uow.rooms.get(room.id)).last_seq == 50


# --- messages -----------------------------------------------------------------------------


async def test_message_add_get_edit_and_tombstone(storage: UnitOfWorkFactory) -> None:
    alice, bob = await add_users(storage, "alice", "bob")
    room = await add_room(storage, alice, bob)
    message = await store(storage, room, alice, "hello")
    assert message.seq == 1
    assert await read(storage, lambda uow: uow.messages.get(message.id)) == message
    assert await read(storage, lambda uow: uow.messages.get(new_id())) is None

    edited = message.edited("hello, world", T0 + timedelta(minutes=1))
    async with storage() as uow:
        await uow.messages.update(edited)
        await uow.commit()
    got = await read(storage, lambda uow: uow.messages.get(message.id))
    assert got == edited
    assert got.edited_at == T0 + timedelta(minutes=1)

    async with storage() as uow:
        await uow.messages.update(edited.tombstone())
        await uow.commit()
    got = await read(storage, lambda uow: uow.messages.get(message.id))
    assert got.deleted
    assert got.body == ""
    assert got.seq == 1
    assert got.client_msg_id == "c-hello"


async def test_messages_and_members_of_several_at_once(storage: UnitOfWorkFactory) -> None:
    """What a batch of StoreMessages reads and writes: one statement each, not one per item."""
    alice, bob, carol = await add_users(storage, "alice", "bob", "carol")
    room, other = await add_room(storage, alice, bob), await add_room(storage, carol)
    first = await store(storage, room, alice, "first")
    batch = [
        Message(new_id(), room.id, bob.id, "second", T0, "c-2", seq=2),
        Message(new_id(), other.id, carol.id, "elsewhere", T0, seq=1),
    ]
    async with storage() as uow:
        await uow.messages.add_many(batch)
        await uow.messages.add_many([])
        await uow.commit()

    async with storage() as uow:
        found = await uow.messages.get_many([first.id, batch[1].id, new_id()])
        assert found == {first.id: first, batch[1].id: batch[1]}
        assert await uow.messages.get_many([]) == {}
        members = await uow.rooms.member_ids_of([room.id, other.id, new_id()])
        assert {rid: sorted(uids) for rid, uids in members.items()} == {
            room.id: sorted([alice.id, bob.id]),
            other.id: [carol.id],
        }
        assert await uow.rooms.member_ids_of([]) == {}
    page, _ = await read(
        storage, lambda uow: uow.messages.page(room.id, after_seq=0, before_seq=None, limit=10)
    )
    assert [m.body for m in page] == ["first", "second"]


async def test_check_send_answers_membership_and_a_stored_copy_in_one_read(
    storage: UnitOfWorkFactory,
) -> None:
    alice, bob, eve = await add_users(storage, "alice", "bob", "eve")
    room, elsewhere = await add_room(storage, alice, bob), await add_room(storage, eve)
    stored = await store(storage, room, alice, "hello")

    async def in_a_unit(room: Room, sender: User, message_id: str) -> tuple[bool, Message | None]:
        return await read(
            storage, lambda uow: uow.messages.check_send(room.id, sender.id, message_id)
        )

    async def by_the_factory(
        room: Room, sender: User, message_id: str
    ) -> tuple[bool, Message | None]:  # the send's own path (a lighter one on PostgreSQL)
        return await storage.check_send(room.id, sender.id, message_id)

    for check in (in_a_unit, by_the_factory):
        assert await check(room, alice, stored.id) == (True, stored)
        assert await check(room, bob, new_id()) == (True, None)
        assert await check(room, eve, stored.id) == (False, None)  # a stranger learns nothing
        assert await check(elsewhere, eve, stored.id) == (True, None)  # not this room's message
        assert await check(elsewhere, eve, new_id()) == (True, None)
        assert await check(elsewhere, alice, new_id()) == (False, None)


async def test_a_batch_with_a_taken_seq_is_a_conflict_and_stores_nothing(
    storage: UnitOfWorkFactory,
) -> None:
    alice, bob = await add_users(storage, "alice", "bob")
    room = await add_room(storage, alice, bob)
    first = await store(storage, room, alice, "one")
    fresh = Message(new_id(), room.id, bob.id, "two", T0, seq=2)
    async with storage() as uow:
        with pytest.raises(Conflict):
            await uow.messages.add_many(
                [fresh, Message(new_id(), room.id, bob.id, "dup", T0, seq=first.seq)]
            )
    assert await read(storage, lambda uow: uow.messages.get(fresh.id)) is None


async def test_a_seq_is_stored_once_per_room(storage: UnitOfWorkFactory) -> None:
    alice, bob = await add_users(storage, "alice", "bob")
    room = await add_room(storage, alice, bob)
    first = await store(storage, room, alice, "one")
    async with storage() as uow:
        with pytest.raises(Conflict):
            await uow.messages.add(Message(new_id(), room.id, bob.id, "two", T0, seq=first.seq))


async def test_page_cursors_and_has_more(storage: UnitOfWorkFactory) -> None:
    alice, bob = await add_users(storage, "alice", "bob")
    room = await add_room(storage, alice, bob)
    noise = await add_room(storage, bob)
    for i in range(7):
        await store(storage, room, alice if i % 2 else bob, f"m{i}")
        await store(storage, noise, bob, f"n{i}")

    async def page(
        after_seq: int | None = None, before_seq: int | None = None, limit: int = 3
    ) -> tuple[list[int], bool]:
        async with storage() as uow:
            found, more = await uow.messages.page(
                room.id, after_seq=after_seq, before_seq=before_seq, limit=limit
            )
        assert all(m.room_id == room.id for m in found)
        return [m.seq for m in found if m.seq is not None], more

    # after_seq: the first `limit` after it, ascending; more = newer remain.
    assert await page(after_seq=0) == ([1, 2, 3], True)
    assert await page(after_seq=3) == ([4, 5, 6], True)
    assert await page(after_seq=4) == ([5, 6, 7], False)
    assert await page(after_seq=6) == ([7], False)
    assert await page(after_seq=7) == ([], False)
    # neither: the newest page, ascending; more = older remain.
    assert await page() == ([5, 6, 7], True)
    assert await page(limit=7) == ([1, 2, 3, 4, 5, 6, 7], False)
    assert await page(limit=200) == ([1, 2, 3, 4, 5, 6, 7], False)
    # before_seq: the last `limit` before it, ascending.
    assert await page(before_seq=5, limit=2) == ([3, 4], True)
    assert await page(before_seq=4) == ([1, 2, 3], False)
    assert await page(before_seq=3) == ([1, 2], False)
    assert await page(before_seq=1) == ([], False)
    assert await page(before_seq=100, limit=1) == ([7], True)

    async with storage() as uow:
        empty = make_room("empty")
        await uow.rooms.add(empty)
        assert await uow.messages.page(empty.id, after_seq=None, before_seq=None, limit=5) == (
            [],
            False,
        )


# --- text the domain accepts ------------------------------------------------------------


async def test_every_text_the_domain_accepts_comes_back_unchanged(
    storage: UnitOfWorkFactory,
) -> None:
    """chat_domain.text's accepted corpus, through every way text is written and read: names
    of users and rooms, bodies stored one by one, in a batch, edited, and read back by id, by
    page, by username, in a room list and a member list. The domain's own normalisation must
    leave each text as it is, so what is stored here is what a use case would store."""
    bodies = list(ACCEPTED_BODIES.values())
    names = [*ACCEPTED_NAMES.values(), LONGEST_DISPLAY_NAME]
    assert [normalise_body(b) for b in bodies] == bodies
    assert [normalise_display_name(n, "x") for n in names] == names
    assert normalise_room_name(LONGEST_ROOM_NAME) == LONGEST_ROOM_NAME

    users = [
        User(new_id(), f"{'u' * 29}{i:03d}", name, T0, "$argon2id$not-a-real-hash")
        for i, name in enumerate(names)
    ]
    room = Room(new_id(), LONGEST_ROOM_NAME, RoomKind.GROUP, T0)
    async with storage() as uow:
        for user in users:
            await uow.users.add(user)
        await uow.rooms.add(room)
        await uow.rooms.add_member(Membership(room.id, users[0].id, Role.OWNER, T0))
        await uow.commit()
    for user in users:
        assert await read(storage, lambda uow, u=user: uow.users.get(u.id)) == user
        assert await read(storage, lambda uow, u=user: uow.users.get_by_username(u.username)) == (
            user
        )
    assert await read(storage, lambda uow: uow.rooms.get(room.id)) == room

    sender = users[0]
    one_by_one = await store(storage, room, sender, bodies[0])
    batch = [draft(room, sender, body) for body in bodies]
    batch = [replace(m, client_msg_id="k" * 63 + str(i % 10)) for i, m in enumerate(batch)]
    stored, _ = await storage.store_new_messages({room.id: batch})
    assert [m.body for m in stored] == bodies
    edited = stored[0].edited(bodies[-1], T0 + timedelta(minutes=1))
    async with storage() as uow:
        await uow.messages.update(edited)
        await uow.commit()

    page, _ = await read(
        storage, lambda uow: uow.messages.page(room.id, after_seq=0, before_seq=None, limit=50)
    )
    assert page == [one_by_one, edited, *stored[1:]]
    assert [m.client_msg_id for m in page[1:]] == [m.client_msg_id for m in batch]
    [summary] = await read(storage, lambda uow: uow.rooms.summaries_for(sender.id))
    assert summary.room.name == LONGEST_ROOM_NAME
    assert summary.last_message == stored[-1]
    [member] = await read(storage, lambda uow: uow.rooms.members(room.id))
    assert member.username == sender.username


# --- room list ----------------------------------------------------------------------------


async def test_summaries_by_activity_with_last_message_and_unread(
    storage: UnitOfWorkFactory, clock: FixedClock
) -> None:
    alice, bob, carol = await add_users(storage, "alice", "bob", "carol")
    # Created in the past, before any message: a message makes its room the most recent.
    base = clock.now() - timedelta(hours=1)
    quiet = await add_room(storage, alice, bob, at=base)
    busy = await add_room(storage, alice, bob, at=base + timedelta(minutes=1))
    newest = await add_room(storage, bob, alice, at=base + timedelta(minutes=2))
    await add_room(storage, bob, carol, at=base + timedelta(minutes=3))  # not alice's

    await store(storage, busy, bob, "b1")
    await store(storage, busy, alice, "a1")  # her own: not unread for her
    last = await store(storage, busy, bob, "b2")

    async with storage() as uow:
        summaries = await uow.rooms.summaries_for(alice.id)
    assert [s.room.id for s in summaries] == [busy.id, newest.id, quiet.id]
    by_id = {s.room.id: s for s in summaries}
    assert by_id[busy.id].last_message == last
    assert by_id[busy.id].room.last_seq == 3
    assert by_id[busy.id].unread_count == 2
    assert by_id[busy.id].last_activity_at > newest.created_at
    assert by_id[busy.id].last_activity_at.utcoffset() == timedelta(0)
    assert by_id[newest.id].last_message is None
    assert by_id[newest.id].unread_count == 0
    assert by_id[newest.id].last_activity_at == newest.created_at
    assert by_id[quiet.id].room == quiet

    async with storage() as uow:
        summaries = await uow.rooms.summaries_for(bob.id)
    # Bob sent b1 and b2; only alice's a1 is unread for him.
    assert {s.room.id: s.unread_count for s in summaries}[busy.id] == 1

    # Reading moves the count; a message elsewhere moves the order.
    async with storage() as uow:
        await uow.rooms.advance_marker(busy.id, alice.id, delivered_seq=None, read_seq=1)
        await uow.commit()
    clock.advance(1)
    quiet_last = await store(storage, quiet, bob, "q1")
    async with storage() as uow:
        summaries = await uow.rooms.summaries_for(alice.id)
    assert [s.room.id for s in summaries] == [quiet.id, busy.id, newest.id]
    assert summaries[0].last_activity_at == clock.now()  # the storage's clock, not the wall's
    assert summaries[0].last_message == quiet_last
    assert summaries[0].unread_count == 1
    assert summaries[1].unread_count == 1
    assert await read(storage, lambda uow: uow.rooms.summaries_for(new_id())) == []


# --- markers ------------------------------------------------------------------------------


async def test_advance_marker_only_moves_forward(storage: UnitOfWorkFactory) -> None:
    alice, bob = await add_users(storage, "alice", "bob")
    room = await add_room(storage, alice, bob)

    async def advance(delivered: int | None, read_seq: int | None) -> tuple[int, int] | None:
        async with storage() as uow:
            after = await uow.rooms.advance_marker(
                room.id, bob.id, delivered_seq=delivered, read_seq=read_seq
            )
            await uow.commit()
        return (after.delivered_seq, after.read_seq) if after else None

    assert await advance(3, None) == (3, 0)
    assert await advance(None, 2) == (3, 2)
    assert await advance(1, 1) == (3, 2)  # never backwards
    assert await advance(5, 5) == (5, 5)
    assert await advance(None, None) == (5, 5)
    membership = await read(storage, lambda uow: uow.rooms.get_membership(room.id, bob.id))
    assert (membership.delivered_seq, membership.read_seq) == (5, 5)
    assert membership.role is Role.MEMBER
    async with storage() as uow:
        assert (
            await uow.rooms.advance_marker(room.id, new_id(), delivered_seq=1, read_seq=1) is None
        )


# --- transactions -------------------------------------------------------------------------


async def test_leaving_without_commit_discards_everything(storage: UnitOfWorkFactory) -> None:
    alice, bob = await add_users(storage, "alice", "bob")
    room = await add_room(storage, alice)
    ghost = make_user("ghost")
    async with storage() as uow:
        await uow.users.add(ghost)
        await uow.rooms.add_member(Membership(room.id, bob.id, Role.MEMBER, T0))
        await uow.rooms.advance_marker(room.id, alice.id, delivered_seq=9, read_seq=9)
        assert await uow.users.get(ghost.id) == ghost  # a unit sees its own writes
    async with storage() as uow:
        assert await uow.users.get(ghost.id) is None
        assert await uow.rooms.get_membership(room.id, bob.id) is None
        assert some(await uow.rooms.get_membership(room.id, alice.id)).read_seq == 0


async def test_an_exception_rolls_back_and_commit_keeps_what_came_before(
    storage: UnitOfWorkFactory,
) -> None:
    kept, lost, dropped = make_user("kept"), make_user("lost"), make_user("dropped")
    with pytest.raises(RuntimeError):
        async with storage() as uow:
            await uow.users.add(lost)
            raise RuntimeError("boom")
    async with storage() as uow:
        await uow.users.add(kept)
        await uow.commit()
        await uow.users.add(dropped)  # a new transaction, never committed
    async with storage() as uow:
        assert await uow.users.get(lost.id) is None
        assert await uow.users.get(kept.id) == kept
        assert await uow.users.get(dropped.id) is None


async def test_check_passes_when_the_database_answers(storage: UnitOfWorkFactory) -> None:
    await storage.check()


# --- SQL only -----------------------------------------------------------------------------


async def test_migrations_are_idempotent_and_match_the_tables(sql_engine: AsyncEngine) -> None:
    await migrate(sql_engine)  # already at head: nothing to do
    async with sql_engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    assert diff == []


@pytest.mark.parametrize(
    "url",
    [
        # Nothing listens on port 1.
        "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere",
        # The server answers, but the database is not there.
        "{postgres_server}/chat_test_missing",
        # A directory where the database file should be: SQLite cannot open it.
        "sqlite+aiosqlite:///{tmp_path}",
    ],
    ids=["postgres-refused", "postgres-missing-database", "sqlite-unopenable"],
)
async def test_a_database_that_does_not_answer_is_unavailable(url: str, tmp_path: Path) -> None:
    if "{postgres_server}" in url:
        server = make_url(require(POSTGRES).url).set(database=None)
        url = url.replace("{postgres_server}", server.render_as_string(hide_password=False))
    engine = create_engine(url.format(tmp_path=tmp_path))
    storage = SqlAlchemyUnitOfWorkFactory(engine, FixedClock())
    threads_before = set(threading.enumerate())
    try:
        with pytest.raises(Unavailable):
            await storage.check()
        with pytest.raises(Unavailable):
            async with storage() as uow:
                await uow.users.get(new_id())
        with pytest.raises(Unavailable):
            await storage.check_send(new_id(), new_id(), new_id())
        # A failed SQLite open leaves no aiosqlite thread behind to answer this loop after
        # it closed (it did: "Event loop is closed" in a thread, after the test).
        left = set(threading.enumerate()) - threads_before
        assert not [t for t in left if "_connection_worker_thread" in t.name]
    finally:
        await engine.dispose()


async def test_contacts_are_everyone_sharing_a_room_once(storage: UnitOfWorkFactory) -> None:
    ann, ben, cat, dot, eve = await add_users(storage, "ann", "ben", "cat", "dot", "eve")
    first, second, elsewhere = make_room(), make_room(), make_room()
    async with storage() as uow:
        for room, people in (
            (first, (ann, ben, cat)),
            (second, (ann, cat, dot)),
            (elsewhere, (eve, ben)),
        ):
            await uow.rooms.add(room)
            for person in people:
                await uow.rooms.add_member(Membership(room.id, person.id, Role.MEMBER, T0))
        await uow.commit()
    async with storage() as uow:
        contacts = await uow.rooms.contact_ids(ann.id)
        assert sorted(contacts) == sorted([ben.id, cat.id, dot.id])  # cat shares two rooms: once
        assert sorted(await uow.rooms.contact_ids(eve.id)) == [ben.id]


# --- consent: removals, hand-over, blocks --------------------------------------------------


async def test_a_removal_is_remembered_per_room_until_forgotten(storage: UnitOfWorkFactory) -> None:
    ann, ben = await add_users(storage, "ann", "ben")
    room, other = await add_room(storage, ann, ben), await add_room(storage, ann, ben)
    async with storage() as uow:
        await uow.rooms.remove_member(room.id, ben.id)
        await uow.rooms.record_removal(room.id, ben.id, T0)
        await uow.rooms.record_removal(room.id, ben.id, T0 + timedelta(seconds=1))  # again: one
        await uow.commit()
    async with storage() as uow:
        assert await uow.rooms.was_removed(room.id, ben.id)
        assert not await uow.rooms.was_removed(other.id, ben.id)
        assert not await uow.rooms.was_removed(room.id, ann.id)
        await uow.rooms.forget_removal(room.id, ben.id)
        await uow.rooms.forget_removal(other.id, ben.id)  # nothing to forget: no error
        # Not committed: the removal is still on record.
    assert await read(storage, lambda uow: uow.rooms.was_removed(room.id, ben.id))
    async with storage() as uow:
        await uow.rooms.forget_removal(room.id, ben.id)
        await uow.commit()
    assert not await read(storage, lambda uow: uow.rooms.was_removed(room.id, ben.id))
    with pytest.raises(Conflict):  # an unknown room, as a foreign key says
        async with storage() as uow:
            await uow.rooms.record_removal(new_id(), ben.id, T0)


async def test_hand_over_moves_ownership_only_from_the_owner_to_a_member(
    storage: UnitOfWorkFactory,
) -> None:
    ann, ben, cat, dot = await add_users(storage, "ann", "ben", "cat", "dot")
    room = await add_room(storage, ann, ben, cat)

    async def roles() -> dict[str, Role]:
        members = await read(storage, lambda uow: uow.rooms.members(room.id))
        return {m.membership.user_id: m.membership.role for m in members}

    for giver, heir in ((ben, cat), (ann, dot), (ann, ann)):  # not the owner; not a member
        async with storage() as uow:
            assert not await uow.rooms.hand_over(room.id, giver.id, heir.id)
    assert await roles() == {ann.id: Role.OWNER, ben.id: Role.MEMBER, cat.id: Role.MEMBER}
    async with storage() as uow:
        assert await uow.rooms.hand_over(room.id, ann.id, ben.id)
        await uow.commit()
    assert await roles() == {ann.id: Role.MEMBER, ben.id: Role.OWNER, cat.id: Role.MEMBER}
    async with storage() as uow:  # the former owner has nothing left to give
        assert not await uow.rooms.hand_over(room.id, ann.id, cat.id)


async def test_concurrent_hand_overs_make_one_owner(storage: UnitOfWorkFactory) -> None:
    ann, ben, cat = await add_users(storage, "ann", "ben", "cat")
    room = await add_room(storage, ann, ben, cat)

    async def hand_to(heir: User) -> bool:
        async with storage() as uow:
            if not await uow.rooms.hand_over(room.id, ann.id, heir.id):
                return False
            await uow.commit()
            return True

    results = await asyncio.gather(hand_to(ben), hand_to(cat))
    assert sorted(results) == [False, True]
    members = await read(storage, lambda uow: uow.rooms.members(room.id))
    owners = [m.membership.user_id for m in members if m.membership.role is Role.OWNER]
    assert owners == [ben.id if results[0] else cat.id]


async def test_blocks_one_way_listed_by_blocker_and_found_from_either_side(
    storage: UnitOfWorkFactory,
) -> None:
    ann, ben, cat, dot = await add_users(storage, "ann", "ben", "cat", "dot")
    later = T0 + timedelta(seconds=5)
    async with storage() as uow:
        await uow.blocks.add(Block(ann.id, cat.id, later))
        await uow.blocks.add(Block(ann.id, ben.id, T0))
        await uow.blocks.add(Block(dot.id, ann.id, T0))
        await uow.commit()
    with pytest.raises(Conflict):
        async with storage() as uow:
            await uow.blocks.add(Block(ann.id, ben.id, later))  # already blocked
    with pytest.raises(Conflict):
        async with storage() as uow:
            await uow.blocks.add(Block(ann.id, new_id(), T0))  # no such user
    async with storage() as uow:
        assert await uow.blocks.get(ann.id, ben.id) == Block(ann.id, ben.id, T0)
        assert await uow.blocks.get(ben.id, ann.id) is None  # one way
        listed = await uow.blocks.blocked_by(ann.id)
        assert [(b.block, b.username) for b in listed] == [
            (Block(ann.id, ben.id, T0), "ben"),
            (Block(ann.id, cat.id, later), "cat"),
        ]
        assert await uow.blocks.blocked_by(ben.id) == []
        involving = await uow.blocks.involving(ann.id)
        assert sorted((b.blocker_id, b.blocked_id) for b in involving) == sorted(
            [(ann.id, ben.id), (ann.id, cat.id), (dot.id, ann.id)]
        )
        assert await uow.blocks.involving(ben.id) == [Block(ann.id, ben.id, T0)]
        await uow.blocks.remove(ann.id, ben.id)
        await uow.blocks.remove(ben.id, ann.id)  # none: no error
        await uow.commit()
    async with storage() as uow:
        assert await uow.blocks.get(ann.id, ben.id) is None
        assert await uow.blocks.involving(ben.id) == []


# --- reading units ------------------------------------------------------------------------


async def test_a_reading_unit_sees_what_is_committed_and_cannot_commit(
    storage: UnitOfWorkFactory,
) -> None:
    alice, bob = await add_users(storage, "alice", "bob")
    room = await add_room(storage, alice, bob)
    message = await store(storage, room, alice, "hello")
    async with storage.reading() as uow:
        assert await uow.users.get(bob.id) == bob
        assert await uow.messages.check_send(room.id, bob.id, message.id) == (True, message)
        page, _ = await uow.messages.page(room.id, after_seq=0, before_seq=None, limit=10)
        assert page == [message]
        with pytest.raises(RuntimeError):
            await uow.commit()


async def _transactions_held(engine: AsyncEngine) -> bool:
    """Whether a connection of ``engine``'s database holds a transaction open right now."""
    if engine.url.get_backend_name() == "sqlite":
        # A unit of work takes SQLite's write lock at BEGIN IMMEDIATE and holds it.
        probe = sqlite3.connect(some(engine.url.database), timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:  # database is locked
            return True
        finally:
            probe.close()
    dsn = _asyncpg_dsn(engine)
    probe = await asyncpg.connect(dsn)
    try:
        held: int = await probe.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state LIKE 'idle in transaction%'"
        )
        return held > 0
    finally:
        await probe.close()


async def test_a_reading_unit_holds_no_transaction_between_its_reads(
    sql_engine: AsyncEngine,
) -> None:
    storage = SqlAlchemyUnitOfWorkFactory(sql_engine, FixedClock())
    (alice,) = await add_users(storage, "alice")
    async with storage() as uow:
        await uow.users.get(alice.id)
        assert await _transactions_held(sql_engine)  # the probe can tell
    async with storage.reading() as uow:
        await uow.users.get(alice.id)
        assert not await _transactions_held(sql_engine)
        assert await uow.users.get(alice.id) == alice


# --- connections the server dropped -------------------------------------------------------


@pytest.mark.postgres
async def test_connections_the_server_closed_are_replaced_without_an_error(
    postgres_engine: AsyncEngine,
) -> None:
    storage = SqlAlchemyUnitOfWorkFactory(postgres_engine, FixedClock())
    dsn = _asyncpg_dsn(postgres_engine)
    (alice,) = await add_users(storage, "alice")
    for unit in (storage.reading, storage):
        async with storage() as uow:  # a connection in the pool, idle
            assert await uow.users.get(alice.id) == alice
        await _end_every_connection(dsn)
        async with unit() as uow:
            assert await uow.users.get(alice.id) == alice
    # A send's check takes its own way to the driver: it replaces dead connections too.
    room = await add_room(storage, alice)
    assert await storage.check_send(room.id, alice.id, new_id()) == (True, None)
    await _end_every_connection(dsn)
    assert await storage.check_send(room.id, alice.id, new_id()) == (True, None)


@pytest.mark.postgres
async def test_a_send_check_whose_connection_dies_under_it_runs_again_on_a_new_one(
    postgres_engine: AsyncEngine,
) -> None:
    storage = SqlAlchemyUnitOfWorkFactory(postgres_engine, FixedClock())
    (alice,) = await add_users(storage, "alice")
    room = await add_room(storage, alice)
    async with _memberships_locked(postgres_engine) as lock:
        # The check waits behind the lock and its backend is ended meanwhile: the
        # connection dies mid-statement, which no checkout could have seen coming.
        check = asyncio.ensure_future(storage.check_send(room.id, alice.id, new_id()))
        first = await lock.backend_waiting()
        assert await lock.watcher.fetchval("SELECT pg_terminate_backend($1, 5000)", first)
        assert await lock.backend_waiting() != first  # the check, run again
        await lock.release()
        assert await asyncio.wait_for(check, 10) == (True, None)


@pytest.mark.postgres
async def test_a_send_check_cancelled_while_it_waits_gives_its_connection_up(
    postgres_engine: AsyncEngine,
) -> None:
    storage = SqlAlchemyUnitOfWorkFactory(postgres_engine, FixedClock())
    (alice,) = await add_users(storage, "alice")
    room = await add_room(storage, alice)
    pool: Any = postgres_engine.sync_engine.pool
    async with _memberships_locked(postgres_engine) as lock:
        check = asyncio.ensure_future(storage.check_send(room.id, alice.id, new_id()))
        waiting = await lock.backend_waiting()
        assert pool.checkedout() == 1
        check.cancel()  # as when the request's client goes away
        with pytest.raises(asyncio.CancelledError):
            await check
        # Still busy with the statement, the connection is not pooled for the next send.
        assert pool.checkedout() == 0
        await lock.release()
        await lock.backend_ended(waiting)  # and it was closed, not left open outside the pool
    assert await storage.check_send(room.id, alice.id, new_id()) == (True, None)


class _LockedMemberships:
    """The memberships table locked by another session: a send's check waits behind it."""

    def __init__(self, watcher: Any, locked: Any) -> None:
        # The watcher is outside any transaction: in one, pg_stat_activity would answer
        # the same snapshot every time.
        self.watcher = watcher
        self._locked = locked

    async def backend_waiting(self, timeout: float = 10.0) -> int:
        """The pid of a backend waiting for a lock, once there is one."""
        async with asyncio.timeout(timeout):
            while True:
                pid = await self.watcher.fetchval(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                )
                if pid is not None:
                    return int(pid)
                await asyncio.sleep(0.01)  # polling what PostgreSQL reports, not a guess

    async def backend_ended(self, pid: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            query = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1"
            while True:
                if not await self.watcher.fetchval(query, pid):
                    return
                await asyncio.sleep(0.01)  # polling what PostgreSQL reports, not a guess

    async def release(self) -> None:
        await self._locked.rollback()


@contextlib.asynccontextmanager
async def _memberships_locked(engine: AsyncEngine) -> AsyncIterator[_LockedMemberships]:
    dsn = _asyncpg_dsn(engine)
    holder, watcher = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        locked = holder.transaction()
        await locked.start()
        await holder.execute("LOCK TABLE memberships IN ACCESS EXCLUSIVE MODE")
        yield _LockedMemberships(watcher, locked)
    finally:
        await holder.close()
        await watcher.close()


def _asyncpg_dsn(engine: AsyncEngine) -> str:
    """The engine's database, as asyncpg's own connect takes it."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _end_every_connection(dsn: str) -> None:
    """As a restart does: the server ends every other connection of the database."""
    admin = await asyncpg.connect(dsn)
    try:
        pids = await admin.fetch(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert pids
        for row in pids:  # waits (up to 5 s) until each has ended
            assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", row[0])
    finally:
        await admin.close()


# --- SQLite WAL checkpoints ---------------------------------------------------------------


class WatchedCheckpointer(WalCheckpointer):
    """Tells the test about each round that found the WAL written."""

    def __init__(self, database: str) -> None:
        super().__init__(database, interval=0.01)
        self.copied_back = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def checkpoint(self) -> tuple[int, int, int]:
        busy, frames, done = super().checkpoint()
        if frames > 0 and done == frames:
            self.loop.call_soon_threadsafe(self.copied_back.set)  # this runs on a thread
        return busy, frames, done


async def test_sqlite_checkpoints_run_on_a_thread_and_the_loop_only_as_a_backstop(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/chat.db")
    await migrate(engine)
    storage = SqlAlchemyUnitOfWorkFactory(engine, FixedClock())
    checkpointer = WatchedCheckpointer(str(tmp_path / "chat.db"))
    try:
        async with engine.connect() as conn:
            autocheckpoint = (await conn.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar()
        assert autocheckpoint == BACKSTOP_AUTOCHECKPOINT_PAGES
        await checkpointer.start()
        alice, bob = await add_users(storage, "alice", "bob")
        room = await add_room(storage, alice, bob)
        for n in range(20):
            await store(storage, room, alice, f"m{n}")
        # A round copies the whole WAL back into the database beside the writer.
        await asyncio.wait_for(checkpointer.copied_back.wait(), 10)
        assert some(checkpointer.last)[0] == 0  # not busy: it never waited for the writer
        assert [
            m.body
            for m in (
                await read(
                    storage,
                    lambda uow: uow.messages.page(room.id, after_seq=0, before_seq=None, limit=50),
                )
            )[0]
        ] == [f"m{n}" for n in range(20)]
    finally:
        await checkpointer.close()
        await engine.dispose()


def test_only_sqlite_files_are_checkpointed(tmp_path: Path) -> None:
    assert sqlite_file(create_engine(f"sqlite+aiosqlite:///{tmp_path}/c.db")) == f"{tmp_path}/c.db"
    assert sqlite_file(create_engine("sqlite+aiosqlite:///:memory:")) is None
    assert sqlite_file(create_engine("postgresql+asyncpg://postgres@127.0.0.1/x")) is None


async def test_allocate_seqs_with_members_reads_each_rooms_members_as_well(
    storage: UnitOfWorkFactory,
) -> None:
    alice, bob, carol = await add_users(storage, "alice", "bob", "carol")
    room, emptied = await add_room(storage, alice, bob), await add_room(storage, carol)
    async with storage() as uow:
        await uow.rooms.remove_member(emptied.id, carol.id)
        blocks = await uow.rooms.allocate_seqs_with_members({room.id: 2, emptied.id: 1})
        assert await uow.rooms.allocate_seqs_with_members({}) == {}
        await uow.commit()
    assert {r: (b.first, sorted(b.member_ids)) for r, b in blocks.items()} == {
        room.id: (1, sorted([alice.id, bob.id])),
        emptied.id: (1, []),
    }
    with pytest.raises(NotFound):
        async with storage() as uow:
            await uow.rooms.allocate_seqs_with_members({room.id: 1, new_id(): 1})
    async with storage() as uow:
        assert (await uow.rooms.allocate_seqs_with_members({room.id: 1}))[room.id].first == 3


# --- storing a batch of new messages (the worker's path) --------------------------------


def draft(room: Room, sender: User, body: str, at: datetime = T0) -> Message:
    return Message(new_id(), room.id, sender.id, body, at, client_msg_id=f"c-{body}")


async def page_of(storage: UnitOfWorkFactory, room: Room) -> list[tuple[str, int | None]]:
    page, _ = await read(
        storage, lambda uow: uow.messages.page(room.id, after_seq=0, before_seq=None, limit=50)
    )
    return [(m.body, m.seq) for m in page]


async def test_a_batch_of_several_rooms_is_numbered_per_room_in_order_and_stored(
    storage: UnitOfWorkFactory, clock: FixedClock
) -> None:
    alice, bob, carol = await add_users(storage, "alice", "bob", "carol")
    room, other, emptied = (
        await add_room(storage, alice, bob),
        await add_room(storage, carol),
        await add_room(storage, carol),
    )
    async with storage() as uow:
        await uow.rooms.remove_member(emptied.id, carol.id)
        await uow.commit()
    await store(storage, room, alice, "before")  # room is at seq 1
    at = clock.advance(60)
    a1, b1, a2 = draft(room, alice, "a1", at), draft(room, bob, "b1", at), draft(room, alice, "a2")
    c1, e1 = draft(other, carol, "c1"), draft(emptied, carol, "e1")

    new, members = await storage.store_new_messages(
        {room.id: [a1, b1, a2], other.id: [c1], emptied.id: [e1]}
    )
    assert new == [a1.numbered(2), b1.numbered(3), a2.numbered(4), c1.numbered(1), e1.numbered(1)]
    assert {r: sorted(ids) for r, ids in members.items()} == {
        room.id: sorted([alice.id, bob.id]),
        other.id: [carol.id],
        emptied.id: [],
    }
    assert await page_of(storage, room) == [("before", 1), ("a1", 2), ("b1", 3), ("a2", 4)]
    assert await read(storage, lambda uow: uow.messages.get(b1.id)) == b1.numbered(3)
    summaries = await read(storage, lambda uow: uow.rooms.summaries_for(bob.id))
    # The batch dated the room's activity by the storage's clock.
    assert summaries[0].room.last_seq == 4 and summaries[0].last_activity_at == at
    assert await storage.store_new_messages({}) == ([], {})


async def test_a_batch_with_a_stored_message_conflicts_and_changes_nothing(
    storage: UnitOfWorkFactory,
) -> None:
    """What StoreMessages' common path relies on: it numbers a batch without looking for
    stored copies, and a redelivered message among them breaks the primary key."""
    alice, bob = await add_users(storage, "alice", "bob")
    room, other = await add_room(storage, alice), await add_room(storage, bob)
    stored = await store(storage, room, alice, "stored")
    fresh = draft(room, alice, "fresh")
    with pytest.raises(Conflict):
        await storage.store_new_messages(
            {other.id: [draft(other, bob, "o")], room.id: [fresh, stored]}
        )
    assert await page_of(storage, room) == [("stored", 1)]
    assert await page_of(storage, other) == []
    async with storage() as uow:  # the seqs taken were freed
        assert await uow.rooms.allocate_seqs({room.id: 1, other.id: 1}) == {room.id: 2, other.id: 1}


async def test_a_batch_for_a_missing_room_is_not_found_and_changes_nothing(
    storage: UnitOfWorkFactory,
) -> None:
    (alice,) = await add_users(storage, "alice")
    room = await add_room(storage, alice)
    gone = make_room()  # never stored
    with pytest.raises(NotFound):
        await storage.store_new_messages(
            {room.id: [draft(room, alice, "kept?")], gone.id: [draft(gone, alice, "lost")]}
        )
    assert await page_of(storage, room) == []
    assert some(await read(storage, lambda uow: uow.rooms.get(room.id))).last_seq == 0


@pytest.mark.timeout(60)
async def test_concurrent_batches_of_one_room_get_1_to_n_in_each_batchs_order(
    storage: UnitOfWorkFactory,
) -> None:
    alice, bob = await add_users(storage, "alice", "bob")
    room = await add_room(storage, alice, bob)
    batches = [[draft(room, alice, f"{b}-{i}") for i in range(3)] for b in range(10)]
    results = await asyncio.gather(*(storage.store_new_messages({room.id: b}) for b in batches))
    seqs = sorted(some(m.seq) for new, _ in results for m in new)
    assert seqs == list(range(1, 31))
    for new, _ in results:  # each batch's seqs are consecutive, in its order
        first = some(new[0].seq)
        assert [m.seq for m in new] == [first, first + 1, first + 2]
    stored = dict(await page_of(storage, room))
    assert stored == {m.body: m.seq for new, _ in results for m in new}


@pytest.mark.postgres
async def test_postgresql_stores_a_batch_in_one_statement_outside_any_transaction(
    postgres_engine: AsyncEngine,
) -> None:
    """One round trip: no BEGIN or COMMIT around it, one statement for every room."""
    storage = SqlAlchemyUnitOfWorkFactory(postgres_engine, FixedClock())
    alice, bob = await add_users(storage, "alice", "bob")
    room, other = await add_room(storage, alice), await add_room(storage, bob)
    # Once first: the driver's one-time look at the arrays' types is not the statement's.
    await storage.store_new_messages({other.id: [draft(other, bob, "first")]})
    executed: list[str] = []
    watched: list[Any] = []

    def record(query: Any) -> None:
        executed.append(query.query)

    def watch(dbapi_connection: Any, *_: Any) -> None:
        # What the driver itself sends, whichever layer above it asks.
        driver = dbapi_connection.driver_connection
        driver.add_query_logger(record)
        watched.append(driver)

    event.listen(postgres_engine.sync_engine, "checkout", watch)
    try:
        await storage.store_new_messages(
            {
                room.id: [draft(room, alice, "a"), draft(room, alice, "b")],
                other.id: [draft(other, bob, "c")],
            }
        )
    finally:
        event.remove(postgres_engine.sync_engine, "checkout", watch)
        for driver in watched:
            driver.remove_query_logger(record)
    await asyncio.sleep(0)  # the driver calls its loggers with call_soon: one loop turn
    assert len(executed) == 1, executed
    assert executed[0].lstrip().startswith("WITH counts AS")
    assert await page_of(storage, room) == [("a", 1), ("b", 2)]


async def test_allocate_seqs_of_several_rooms_in_one_go(storage: UnitOfWorkFactory) -> None:
    (alice,) = await add_users(storage, "alice")
    first, second, third = [await add_room(storage, alice) for _ in range(3)]
    async with storage() as uow:
        await uow.rooms.allocate_seq(first.id, 2)  # first is at 2
        firsts = await uow.rooms.allocate_seqs({first.id: 3, second.id: 1})
        assert firsts == {first.id: 3, second.id: 1}
        assert await uow.rooms.allocate_seqs({}) == {}
        await uow.commit()
    with pytest.raises(NotFound):  # one room missing: nothing is taken for the others
        async with storage() as uow:
            await uow.rooms.allocate_seqs({third.id: 1, new_id(): 1})
    async with storage() as uow:
        assert await uow.rooms.allocate_seqs({first.id: 1, third.id: 1}) == {
            first.id: 6,
            third.id: 1,
        }
