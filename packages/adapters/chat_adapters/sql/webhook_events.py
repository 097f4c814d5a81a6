"""The transactional outbox of webhook events on SQL: written by a unit of work with its
change, read and deleted by the relay (chat_domain.usecases.webhook_relay)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

from sqlalchemy import Row, delete, func, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chat_adapters.sql import engine as engines
from chat_adapters.sql.errors import connecting, translate_errors
from chat_adapters.sql.repositories import Executor
from chat_adapters.sql.tables import webhook_outbox
from chat_domain.ports.storage import WebhookEventRepository
from chat_domain.ports.system import Clock
from chat_domain.ports.webhooks import PendingWebhookEvent, PendingWebhookEvents, WebhookEvent

# The PostgreSQL advisory lock the relays take turns with (any fixed 64-bit number; such
# locks are per database, so two chats sharing a server do not meet).
RELAY_LOCK_KEY = 0x63686174_7768_6F62  # "chat" "wh" "ob"
_TRY_LOCK = text("SELECT pg_try_advisory_lock(:key)")
_UNLOCK = text("SELECT pg_advisory_unlock(:key)")
# SQLite's lease: one lock per database file for the whole process.
_SQLITE_LEASES: dict[str, asyncio.Lock] = {}


def _event(row: Row[Any]) -> PendingWebhookEvent:
    event = WebhookEvent(row.event_id, row.type, row.room_id, row.timestamp, json.loads(row.data))
    return PendingWebhookEvent(row.position, event)


class SqlAlchemyWebhookEventRepository(WebhookEventRepository):
    """Rows of ``webhook_outbox`` in the unit's transaction: gone if it rolls back."""

    def __init__(self, db: Executor, clock: Clock) -> None:
        self._db, self._clock = db, clock

    async def add(self, events: Sequence[WebhookEvent]) -> None:
        if not events:
            return
        now = self._clock.now()
        # One INSERT per event, in order: the positions (a sequence, or SQLite's rowid)
        # follow the order given.
        for event in events:
            await self._db.execute(
                insert(webhook_outbox).values(
                    event_id=event.id,
                    type=event.type,
                    room_id=event.room_id,
                    timestamp=event.timestamp,
                    data=json.dumps(dict(event.data), separators=(",", ":")),
                    created_at=now,
                )
            )


class SqlAlchemyPendingWebhookEvents(PendingWebhookEvents):
    """The relay's side of ``webhook_outbox``.

    The lease: one relay per process by an ``asyncio.Lock``; across processes, on
    PostgreSQL, a session-level ``pg_try_advisory_lock`` held on a connection of its own
    for the whole pass. Chosen over a row lock (``SELECT … FOR UPDATE`` on a lease row)
    because a row lock lives in a transaction that would stay open while the relay waits
    for RabbitMQ, and over a lease row with an expiry because a pass slower than the
    expiry would let two relays interleave; an advisory lock is freed by PostgreSQL itself
    when its connection dies, so a crashed relay never blocks the others. SQLite serves
    one process (its engine has one connection, shared by every unit of work), so the
    process's lock (one per database file) is the whole lease there.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reading = engines.reading_engine(engine)
        self._postgresql = engine.url.get_backend_name() == "postgresql"
        database = engine.url.render_as_string(hide_password=False)
        self._local = (
            asyncio.Lock()
            if self._postgresql
            else _SQLITE_LEASES.setdefault(database, asyncio.Lock())
        )

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[bool]:
        if self._local.locked():
            yield False
            return
        async with self._local:
            if not self._postgresql:
                yield True
                return
            async with self._advisory_lock() as held:
                yield held

    @contextlib.asynccontextmanager
    async def _advisory_lock(self) -> AsyncIterator[bool]:
        # Autocommit: no transaction stays open on the lock's connection.
        with connecting():
            conn = await self._reading.connect()
        try:
            with translate_errors():
                held = bool(await conn.scalar(_TRY_LOCK, {"key": RELAY_LOCK_KEY}))
            try:
                yield held  # the pass's own errors pass through untranslated
            finally:
                if held:
                    with translate_errors():
                        await self._unlock(conn)
        finally:
            with contextlib.suppress(DBAPIError, OSError):
                await conn.close()

    @staticmethod
    async def _unlock(conn: AsyncConnection) -> None:
        try:
            await conn.execute(_UNLOCK, {"key": RELAY_LOCK_KEY})
        except BaseException:
            # Back in the pool still holding the lock, it would stop every relay: closed
            # instead, which ends the session and so frees the lock.
            with contextlib.suppress(Exception):
                await conn.invalidate()
            raise

    async def oldest(self, limit: int) -> list[PendingWebhookEvent]:
        statement = select(webhook_outbox).order_by(webhook_outbox.c.position).limit(limit)
        async with _connected(self._reading) as conn:
            return [_event(row) for row in await conn.execute(statement)]

    async def remove(self, positions: Collection[int]) -> None:
        if not positions:
            return
        statement = delete(webhook_outbox).where(webhook_outbox.c.position.in_(list(positions)))
        async with _connected(self._engine) as conn:
            await conn.execute(statement)
            await conn.commit()

    async def count(self) -> int:
        async with _connected(self._reading) as conn:
            waiting = await conn.scalar(select(func.count()).select_from(webhook_outbox))
            return int(waiting or 0)


@contextlib.asynccontextmanager
async def _connected(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A pooled connection, database errors as domain ones; back to the pool at the end."""
    with connecting():
        conn = await engine.connect()
    try:
        with translate_errors():
            yield conn
    finally:
        with contextlib.suppress(DBAPIError, OSError):
            await conn.close()
