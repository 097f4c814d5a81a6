"""What only the SQL storage adapter has, on SQLite and PostgreSQL: migrations, a database
that does not answer, the transactions its reading units (do not) hold, connections the
server dropped under a send's check, SQLite's WAL checkpoints, and the one statement a
batch is stored in on PostgreSQL.

The port's behaviour, the same on every adapter, is the contract in
tests/contract/test_storage.py; these tests share its database fixtures (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

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
from chat_domain.errors import Unavailable
from tests.support.services import POSTGRES, require
from tests.support.storage import (
    add_room,
    add_users,
    draft,
    new_id,
    page_of,
    read,
    some,
    store,
)

# --- schema -------------------------------------------------------------------------------


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


# --- reading units ------------------------------------------------------------------------


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


# --- storing a batch of new messages (the worker's path) ----------------------------------


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
