"""Statements asked of a pooled asyncpg connection itself, past SQLAlchemy's layers.

The hot statements (a send's check on every send, a worker's batch store on every flush)
cost more CPU in SQLAlchemy Core (the ``AsyncConnection``, the execution context, the
greenlet hand-offs, the result) than in the driver: measured per call against the local
PostgreSQL, a send's check ~600 µs -> ~250-390 µs, a batch store ~540 µs -> ~290 µs of
client CPU. The connection still comes from the engine's pool (its size, its checkout
listener that drops connections the server closed) and goes back there; only the
statement skips SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from chat_adapters.sql.errors import connecting, has_unavailable_sqlstate
from chat_domain.errors import Conflict, Unavailable

T = TypeVar("T")


async def on_driver(engine: AsyncEngine, run: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """``run`` on a pooled asyncpg connection (autocommit: each statement is its own
    transaction), then the connection back to the pool.

    If the connection turns out dead (the database restarted), ``run`` is called once more
    on a fresh one; a database that cannot be reached raises ``Unavailable``, a broken
    constraint ``Conflict``. ``run`` must be safe to call again after a connection died
    under it: its statement may or may not have committed.
    """
    for attempt in (1, 2):
        pooled = await _checkout(engine)
        try:
            driver: asyncpg.Connection = pooled.driver_connection
            answer = await run(driver)
        except Exception as exc:
            if not _lost_database(exc):
                await _give_back(pooled)
                if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
                    raise Conflict("conflicts with stored data") from exc
                raise
            _drop(pooled, exc)
            if attempt == 2:
                raise Unavailable("database unavailable") from exc
            continue
        except BaseException:
            # Cancelled mid-statement (its request went away): the server may still be
            # answering on this connection, so it must not go back to the pool.
            _drop(pooled)
            raise
        await _give_back(pooled)
        return answer
    raise AssertionError("unreachable")  # pragma: no cover


async def _checkout(engine: AsyncEngine) -> PoolProxiedConnection:
    # On this path the driver's own errors come through, not wrapped by SQLAlchemy.
    try:
        with connecting():
            return await engine.raw_connection()
    except engine.dialect.loaded_dbapi.Error as exc:
        raise Unavailable("database unavailable: cannot connect") from exc


def _lost_database(exc: BaseException) -> bool:
    if isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError):
        return True  # reset, refused, or "connection is closed"
    return isinstance(exc, asyncpg.PostgresError) and has_unavailable_sqlstate(exc)


async def _give_back(pooled: PoolProxiedConnection) -> None:
    # The pool's return may reset the connection, which SQLAlchemy's asyncpg adapter does
    # from inside a greenlet only.
    await greenlet_spawn(pooled.close)


def _drop(pooled: PoolProxiedConnection, exc: BaseException | None = None) -> None:
    # Outside a greenlet, invalidating closes the socket at once: a dead connection has no
    # goodbye to wait for, and a cancelled task must not wait at all.
    pooled.invalidate(exc)
    pooled.close()
