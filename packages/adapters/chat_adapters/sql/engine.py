"""Engines for SQLite (aiosqlite) and PostgreSQL (asyncpg), tuned so one code path fits both."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from chat_adapters.sql.checkpoints import BACKSTOP_AUTOCHECKPOINT_PAGES
from chat_adapters.sql.sqlite_inline import inline_connector
from chat_domain.errors import Unavailable

SQLITE_BUSY_TIMEOUT_MS = 10_000
CHECK_TIMEOUT_S = 5.0

# Plain driver-less URLs are accepted and given the async driver this adapter needs.
_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def _async_url(url: str) -> URL:
    parsed = make_url(url)
    drivername = _ASYNC_DRIVERS.get(parsed.drivername, parsed.drivername)
    return parsed.set(drivername=drivername)


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    """An ``AsyncEngine`` for ``url``; connects lazily, so it is safe to build at boot.

    ``pool_size``: the PostgreSQL connections kept open; as many again may be opened for
    a burst (SQLite has one connection).
    """
    parsed = _async_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    return _postgresql_engine(parsed, pool_size)


def reading_engine(engine: AsyncEngine) -> AsyncEngine:
    """``engine`` for units of work that only read: no transaction around their statements.

    On PostgreSQL, autocommit: asyncpg sends neither BEGIN nor ROLLBACK, two round trips
    of the three a one-query unit took (and a one-statement write is its own transaction,
    see ``message_batches``). On SQLite the BEGIN IMMEDIATE below is skipped (the
    driver connection is in autocommit already). Shares ``engine``'s pool.
    """
    if engine.url.get_backend_name() == "sqlite":
        return engine.execution_options(**{_NO_BEGIN: True})
    return engine.execution_options(isolation_level="AUTOCOMMIT")


# Execution option of the SQLite reading engine: its connections skip BEGIN IMMEDIATE.
_NO_BEGIN = "chat_no_begin"


def _postgresql_engine(url: URL, pool_size: int) -> AsyncEngine:
    # Every statement planned for its parameters and the tables' current size. asyncpg
    # prepares each statement once per connection, and PostgreSQL then reuses a generic
    # plan made when it was first run: on a new database, when the tables were nearly
    # empty, that was a sequential scan of messages per stored batch, kept while the
    # table grew (until an autovacuum ANALYZE, a minute or more later). Planning these
    # one-row lookups again costs tens of microseconds each.
    engine = create_async_engine(
        url,
        connect_args={"server_settings": {"plan_cache_mode": "force_custom_plan"}},
        # A connection opened beyond pool_size is closed when it comes back. With
        # SQLAlchemy's 5, a loaded server was over it often enough to open and close a
        # connection every few requests: 8% of its CPU in asyncpg's connect.
        pool_size=pool_size,
        max_overflow=pool_size,
    )

    # A restarted PostgreSQL closes its connections, and asyncpg notices by itself; such a
    # connection is dropped at checkout and the pool hands out a fresh one (SQLAlchemy's
    # "pessimistic disconnect handling", custom variant). pool_pre_ping would also catch
    # a peer that vanished silently, for three round trips per checkout (BEGIN, ";",
    # ROLLBACK): a fifth of a server's CPU under the bench. That rarer case costs one
    # failed first statement instead, which the unit of work retries on a new connection.
    @event.listens_for(engine.sync_engine, "checkout")
    def _drop_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        # SQLAlchemy's adapter of an asyncpg connection hands the connection out publicly.
        if dbapi_connection.driver_connection.is_closed():
            raise DisconnectionError("connection closed by the server")

    return engine


def _sqlite_engine(url: URL) -> AsyncEngine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    # One connection: SQLite has one writer at a time anyway, and every unit of work takes
    # the write lock up front (below). With a pool, contending transactions would each sit
    # in SQLite's busy handler, which sleeps in growing steps (up to 100 ms) instead of
    # waking when the lock frees; queueing for the one connection in asyncio has no such
    # dead time. Other processes (a `chat migrate`) still wait on busy_timeout.
    engine = create_async_engine(
        url,
        async_creator=inline_connector(database or ":memory:"),
        # Named, since SQLAlchemy would pick a StaticPool for ":memory:" and refuse the size:
        # an in-memory database then lives as long as this one pooled connection.
        poolclass=AsyncAdaptedQueuePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=30,
    )

    # SQLAlchemy recipe "Serializable isolation / Savepoints / Transactional DDL" for the
    # sqlite3 driver, on aiosqlite: the driver must not open transactions by itself ...
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # WAL: readers never block the writer; busy_timeout: writers queue, not fail.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            # Checkpoints (the disk syncs) run on a thread: see chat_adapters.sql.checkpoints.
            cursor.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_AUTOCHECKPOINT_PAGES}")
        finally:
            cursor.close()

    # ... and every transaction takes the write lock up front: a deferred transaction that
    # reads, then writes after another writer committed, fails at once ("database is locked")
    # instead of waiting on busy_timeout. Units of work read then write, so all are IMMEDIATE.
    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if not conn.get_execution_options().get(_NO_BEGIN):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


async def check(engine: AsyncEngine) -> None:
    """Raise ``Unavailable`` unless the database answers a trivial query in time."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except TimeoutError as exc:
        raise Unavailable("database: no answer") from exc
    except Exception as exc:
        # Readiness: whatever the cause (down, unknown database, bad password), not ready.
        raise Unavailable(f"database: {type(exc).__name__}") from exc
