"""Storage for tests: a PostgreSQL database per test session, engines on SQLite files and on
it, and shortcuts to the rows a storage test starts from.

The fixtures built on these (``postgres_url``, ``sql_engine``, ``postgres_engine``) are in
``tests/conftest.py``: the storage contract (tests/contract) and the SQL-only tests
(tests/integration) share one database per session.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from chat_adapters.sql.engine import create_engine
from chat_adapters.sql.migrate import migrate
from chat_domain.entities import Membership, Message, Role, Room, RoomKind, User
from chat_domain.ports.storage import UnitOfWorkFactory
from tests.support.services import POSTGRES, require

T = TypeVar("T")
# Fixed, whole-millisecond times in the past: every backend must give them back unchanged.
T0 = datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
# The SQL backends a test runs on: PostgreSQL skips on a laptop without it, fails in CI.
SQL_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


# --- databases ----------------------------------------------------------------------------


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


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, migrated database, dropped at the end; its SQLAlchemy URL."""
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


async def open_sql_engine(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncEngine:
    """A migrated engine: a new SQLite file, or the session's PostgreSQL database emptied."""
    if kind == "sqlite":
        # A directory that does not exist yet: the engine must create it.
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/var/chat.db")
        await migrate(engine)
        return engine
    engine = create_engine(request.getfixturevalue("postgres_url"))
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "TRUNCATE webhook_outbox, api_keys, user_blocks, room_removals, messages,"
                " memberships, rooms, users"
            )
        )
    return engine


# --- rows ---------------------------------------------------------------------------------


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


def draft(room: Room, sender: User, body: str, at: datetime = T0) -> Message:
    """A new message as a worker gets it from the broker: no seq yet."""
    return Message(new_id(), room.id, sender.id, body, at, client_msg_id=f"c-{body}")


async def page_of(storage: UnitOfWorkFactory, room: Room) -> list[tuple[str, int | None]]:
    page, _ = await read(
        storage, lambda uow: uow.messages.page(room.id, after_seq=0, before_seq=None, limit=50)
    )
    return [(m.body, m.seq) for m in page]
