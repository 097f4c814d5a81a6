"""aiosqlite's interface, executed on the event loop's own thread.

aiosqlite runs every call on a worker thread and wakes the event loop with the answer:
about 40 µs of thread hand-off per call, against 2-3 µs for SQLite itself, and
SQLAlchemy makes several calls per statement. With WAL and ``synchronous=NORMAL`` a
commit does not wait for the disk, so running SQLite inline blocks the loop for
microseconds and makes the embedded message path several times faster.

The one wait SQLite can still do is on another *process's* write lock (busy_timeout);
in the embedded mode one process owns the file, so that does not happen in practice.
aiosqlite's worker thread still runs, but only opens and closes the connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from functools import partial
from typing import Any

import aiosqlite

# How long a failed open waits for aiosqlite's thread to end (it only closes a handle).
THREAD_STOP_TIMEOUT_S = 5.0


class InlineSqliteConnection(aiosqlite.Connection):
    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)


def inline_connector(database: str) -> Callable[[], Any]:
    """An ``async_creator`` for SQLAlchemy's aiosqlite dialect."""

    async def connect() -> aiosqlite.Connection:
        # Opened on aiosqlite's thread, used on the loop's: hence check_same_thread=False.
        # Calls never overlap, since everything but open/close runs on one thread.
        connector = partial(sqlite3.connect, database, check_same_thread=False)
        connection = InlineSqliteConnection(connector, iter_chunk_size=64)
        try:
            return await connection
        except BaseException:
            # aiosqlite stops its thread after a failed open without waiting for it; the
            # thread then answers a future on this loop, and if the loop has closed
            # meanwhile ("Event loop is closed" in a thread) that is an error with a trace.
            # aiosqlite has no public join yet (omnilib/aiosqlite#387, #241).
            await asyncio.to_thread(connection._thread.join, THREAD_STOP_TIMEOUT_S)
            raise

    return connect
