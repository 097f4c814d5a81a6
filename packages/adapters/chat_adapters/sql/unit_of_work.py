"""The unit of work: one connection, one transaction, the repositories sharing them."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import asyncpg
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Executable

from chat_adapters.sql import driver_lane, message_batches, send_checks
from chat_adapters.sql import engine as engines
from chat_adapters.sql.errors import connecting, translate_errors
from chat_adapters.sql.repositories import (
    SqlAlchemyApiKeyRepository,
    SqlAlchemyBlockRepository,
    SqlAlchemyMessageRepository,
    SqlAlchemyRoomRepository,
    SqlAlchemyUserRepository,
)
from chat_adapters.sql.webhook_events import SqlAlchemyWebhookEventRepository
from chat_domain.entities import Message
from chat_domain.errors import Conflict, Unavailable
from chat_domain.ports.storage import UnitOfWork, UnitOfWorkFactory
from chat_domain.ports.system import Clock


class SqlAlchemyUnitOfWork(UnitOfWork):
    """A transaction on one pooled connection, taken at the first statement.

    The connection goes back to the pool when the ``async with`` block ends; leaving
    without ``commit`` rolls back. After ``commit`` the next statement opens a new
    transaction on the same connection. A reading unit (on ``reading_engine``) runs its
    statements in autocommit and cannot commit.

    If the first statement finds its pooled connection dead (the database restarted, or
    the network dropped it), nothing has run in the unit yet: it starts again, once, on
    a new connection.
    """

    def __init__(self, engine: AsyncEngine, clock: Clock, read_only: bool = False) -> None:
        self._engine, self._read_only = engine, read_only
        self._conn: AsyncConnection | None = None
        self.users = SqlAlchemyUserRepository(self)
        self.rooms = SqlAlchemyRoomRepository(self, clock)
        self.messages = SqlAlchemyMessageRepository(self)
        self.blocks = SqlAlchemyBlockRepository(self)
        self.api_keys = SqlAlchemyApiKeyRepository(self)
        self.webhook_events = SqlAlchemyWebhookEventRepository(self, clock)

    async def _connection(self) -> AsyncConnection:
        if self._conn is None:
            with connecting():
                self._conn = await self._engine.connect()
        return self._conn

    async def execute(
        self,
        statement: Executable,
        params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> CursorResult[Any]:
        """Run ``statement`` in this unit's transaction (begun on first use)."""
        with translate_errors():
            first = self._conn is None
            conn = await self._connection()
            try:
                return await conn.execute(statement, params)
            except DBAPIError as exc:
                if not (first and exc.connection_invalidated):
                    raise
            await self._release()
            conn = await self._connection()
            return await conn.execute(statement, params)

    async def insert_or_conflict(self, statement: Executable, conflict: str) -> None:
        """Run an INSERT that may break a unique constraint, raising ``Conflict`` if it does.

        A savepoint keeps the transaction usable after the failure: PostgreSQL would
        otherwise refuse every later statement of the unit.
        """
        with translate_errors():
            conn = await self._connection()
            try:
                async with conn.begin_nested():
                    await conn.execute(statement)
            except IntegrityError as exc:
                raise Conflict(conflict) from exc

    async def commit(self) -> None:
        if self._read_only:
            raise RuntimeError("a reading unit of work cannot commit")
        if self._conn is not None and self._conn.in_transaction():
            with translate_errors():
                await self._conn.commit()

    async def rollback(self) -> None:
        if self._conn is not None and self._conn.in_transaction():
            with translate_errors():
                await self._conn.rollback()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.rollback()
        except Unavailable:
            if exc is None:
                raise
            # The block already failed (likely for the same reason): keep its error.
        finally:
            await self._release()

    async def _release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            # A dead connection is invalidated by the pool; closing it must not mask
            # the error that brought us here.
            with contextlib.suppress(DBAPIError, OSError):
                await conn.close()


class SqlAlchemyUnitOfWorkFactory(UnitOfWorkFactory):
    """Storage entry point: opens units of work on one ``AsyncEngine``. ``clock`` dates a
    room's activity when a message takes its next seq."""

    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine, self._clock = engine, clock
        # Autocommit on PostgreSQL: each statement is a transaction of its own.
        self._reading_engine = engines.reading_engine(engine)
        # PostgreSQL's lighter paths: a send's check on the driver, a batch in one statement.
        self._postgresql = engine.url.get_backend_name() == "postgresql"

    def __call__(self) -> SqlAlchemyUnitOfWork:
        return SqlAlchemyUnitOfWork(self._engine, self._clock)

    def reading(self) -> SqlAlchemyUnitOfWork:
        return SqlAlchemyUnitOfWork(self._reading_engine, self._clock, read_only=True)

    async def check_send(
        self, room_id: str, sender_id: str, message_id: str
    ) -> tuple[bool, Message | None]:
        if not self._postgresql:
            return await super().check_send(room_id, sender_id, message_id)
        member, stored = await send_checks.check_send(self._engine, room_id, sender_id, message_id)
        if member and stored:  # a retry of a stored message: read it whole
            return await super().check_send(room_id, sender_id, message_id)
        return member, None

    async def store_new_messages(
        self, by_room: Mapping[str, Sequence[Message]]
    ) -> tuple[list[Message], dict[str, list[str]]]:
        if not self._postgresql:
            return await super().store_new_messages(by_room)
        if not by_room:
            return [], {}
        # One statement in autocommit: atomic by itself, and one round trip, not four.
        parameters = message_batches.store_new_messages_parameters(by_room, self._clock.now())

        async def store(driver: asyncpg.Connection) -> list[asyncpg.Record]:
            rows: list[asyncpg.Record] = await driver.fetch(
                message_batches.STORE_NEW_MESSAGES, *parameters
            )
            return rows

        # Run again after a connection died under it, it is stored or it conflicts with
        # its own first run (Conflict: the caller then stores what is not stored yet).
        rows = await driver_lane.on_driver(self._engine, store)
        return message_batches.stored_batch(by_room, rows)

    async def check(self) -> None:
        await engines.check(self._engine)
