"""WAL checkpoints of the embedded SQLite file, on a thread instead of the event loop.

The message path runs SQLite on the event loop (``sqlite_inline``). With WAL and
``synchronous=NORMAL`` a commit only appends to the WAL; the disk is synced at checkpoints,
which SQLite runs inside whichever commit crosses ``wal_autocheckpoint``. Under the bench
that was a commit every second or so taking 4 ms, and now and then 60-160 ms when the
disk was slow to sync: a stall of every request and socket of the node, the tail of the
latency. Here a thread checkpoints every ``interval`` (SQLite lets a checkpoint run beside
a writer); the serving connection keeps a far higher autocheckpoint as a backstop, in case
this thread ever falls behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

# Pages (4 KiB) of WAL after which a commit on the loop checkpoints anyway: ~40 MiB.
BACKSTOP_AUTOCHECKPOINT_PAGES = 10_000
CHECKPOINT_INTERVAL_S = 0.5


def sqlite_file(engine: AsyncEngine) -> str | None:
    """The database file of a SQLite engine; None for PostgreSQL or an in-memory database."""
    database = engine.url.database or ""
    if engine.url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    return database


class WalCheckpointer:
    """Checkpoints one SQLite file every ``interval`` seconds on a worker thread.

    PASSIVE checkpoints never wait for the writer or readers: they copy what they can
    and leave the rest to the next round.
    """

    def __init__(self, database: str, interval: float = CHECKPOINT_INTERVAL_S) -> None:
        self._database, self._interval = database, interval
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._connection: sqlite3.Connection | None = None
        # The last round's answer: (busy, frames in the WAL, frames checkpointed).
        self.last: tuple[int, int, int] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sqlite-wal-checkpoints")

    async def close(self) -> None:
        # Not a cancel: a checkpoint under way on its thread must end before its
        # connection is closed (closing it under the thread crashes the process).
        self._stopping.set()
        if self._task is not None:
            await asyncio.shield(self._task)
            self._task = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
                return
            try:
                await asyncio.to_thread(self.checkpoint)
            except sqlite3.Error as exc:  # the backstop keeps the WAL bounded meanwhile
                log.warning("SQLite WAL checkpoint failed: %s", exc)

    def checkpoint(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint: (busy, frames in the WAL, frames checkpointed)."""
        if self._connection is None:
            # One call at a time, from whichever pool thread runs it.
            self._connection = sqlite3.connect(self._database, check_same_thread=False)
        row = self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.last = int(row[0]), int(row[1]), int(row[2])
        return self.last


@contextlib.asynccontextmanager
async def checkpointing(engine: AsyncEngine) -> AsyncIterator[None]:
    """Checkpoint ``engine``'s SQLite file off the event loop while the block runs."""
    database = sqlite_file(engine)
    checkpointer = WalCheckpointer(database) if database is not None else None
    if checkpointer is not None:
        await checkpointer.start()
    try:
        yield
    finally:
        if checkpointer is not None:
            await checkpointer.close()
