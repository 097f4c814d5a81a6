"""A send's membership check on PostgreSQL, asked of the pooled asyncpg connection itself.

Every send asks it, so its cost is a server's: through SQLAlchemy Core (a checkout into an
``AsyncConnection``, the execution context, the greenlet hand-offs, the result) it took
~600 µs of CPU and 15% of a cluster server's samples at 200 messages/s; on this lane it
takes ~250-390 µs, of which asyncpg answering the prepared statement is ~100 µs. It still
takes its connection from the engine's pool (its size, its checkout listener that drops
connections the server closed) and gives it back there; only the statement skips
SQLAlchemy.

It answers two booleans. The rare retry whose message is stored already is then read
whole by the repository, where the columns' types are SQLAlchemy's to convert.
"""

from __future__ import annotations

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from chat_adapters.sql.errors import connecting, has_unavailable_sqlstate
from chat_domain.errors import Unavailable

# asyncpg prepares it once per connection and caches it by its text.
SEND_CHECK = """
SELECT
    EXISTS (SELECT 1 FROM memberships WHERE room_id = $1 AND user_id = $2),
    EXISTS (SELECT 1 FROM messages WHERE id = $3 AND room_id = $1)
"""


async def check_send(
    engine: AsyncEngine, room_id: str, sender_id: str, message_id: str
) -> tuple[bool, bool]:
    """(the sender is a member of the room, a message ``message_id`` of the room is stored).

    Runs in autocommit: it sees what is committed, as a reading unit of work does. If the
    pooled connection turns out dead (the database restarted), the check runs again once
    on a fresh one; a database that cannot be reached raises ``Unavailable``.
    """
    for attempt in (1, 2):
        pooled = await _checkout(engine)
        try:
            driver: asyncpg.Connection = pooled.driver_connection
            record = await driver.fetchrow(SEND_CHECK, room_id, sender_id, message_id)
        except Exception as exc:
            if not _lost_database(exc):
                await _give_back(pooled)
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
        return bool(record[0]), bool(record[1])
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
