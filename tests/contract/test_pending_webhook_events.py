"""Contract of the transactional outbox of webhook events, on every storage adapter: what a
unit of work records (``UnitOfWork.webhook_events``) and what the relay reads, removes and
leases (``PendingWebhookEvents``). Memory always; SQLite on a file; PostgreSQL when there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from chat_adapters.memory.storage import InMemoryPendingWebhookEvents, InMemoryUnitOfWorkFactory
from chat_adapters.memory.system import FixedClock
from chat_adapters.sql.engine import create_engine
from chat_adapters.sql.unit_of_work import SqlAlchemyUnitOfWorkFactory
from chat_adapters.sql.webhook_events import SqlAlchemyPendingWebhookEvents
from chat_domain.ports.storage import UnitOfWorkFactory
from chat_domain.ports.webhooks import PendingWebhookEvents, WebhookEvent
from tests.support.storage import SQL_BACKENDS, open_sql_engine


@dataclass
class Outbox:
    """A storage and its relay side; ``another`` builds a second relay side on the same
    database, as another relay (another process, with SQL) would have."""

    storage: UnitOfWorkFactory
    pending: PendingWebhookEvents
    another: Callable[[], PendingWebhookEvents]


@pytest.fixture(params=["memory", *SQL_BACKENDS])
async def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Outbox]:
    clock = FixedClock()
    if request.param == "memory":
        memory = InMemoryUnitOfWorkFactory(clock)
        yield Outbox(
            memory,
            InMemoryPendingWebhookEvents(memory),
            lambda: InMemoryPendingWebhookEvents(memory),
        )
        return
    engine = await open_sql_engine(request.param, request, tmp_path)
    others = []

    def another() -> PendingWebhookEvents:
        # An engine of its own: its own connections, as another process's.
        other = create_engine(engine.url.render_as_string(hide_password=False))
        others.append(other)
        return SqlAlchemyPendingWebhookEvents(other)

    try:
        yield Outbox(
            SqlAlchemyUnitOfWorkFactory(engine, clock),
            SqlAlchemyPendingWebhookEvents(engine),
            another,
        )
    finally:
        for other in others:
            await other.dispose()
        await engine.dispose()


def event(room: str, n: int, **data: object) -> WebhookEvent:
    return WebhookEvent(f"evt_{room}_{n}", "member.added", room, 1764990000 + n, data)


async def record(storage: UnitOfWorkFactory, *events: WebhookEvent) -> None:
    async with storage() as uow:
        await uow.webhook_events.add(events)
        await uow.commit()


async def test_recorded_events_come_back_whole_in_the_order_recorded(outbox: Outbox) -> None:
    first = event("r1", 0, room_id="r1", user_id="u1", seq=None, flags=[1, "two"])
    body = "ünïcode ✓ \"quoted\" 'and' \\ back"
    await record(outbox.storage, first, event("r2", 0, body=body, deleted=False))
    await record(outbox.storage, event("r1", 1, nested={"a": {"b": 2}}))

    got = await outbox.pending.oldest(10)

    assert [p.event for p in got] == [
        first,
        event("r2", 0, body=body, deleted=False),
        event("r1", 1, nested={"a": {"b": 2}}),
    ]
    positions = [p.position for p in got]
    assert positions == sorted(positions) and len(set(positions)) == 3
    assert await outbox.pending.count() == 3


async def test_a_rollback_drops_the_events_the_unit_recorded(outbox: Outbox) -> None:
    # (Not read while the unit is open: SQLite's one connection is the unit's until then.)
    async with outbox.storage() as uow:
        await uow.webhook_events.add([event("r1", 0)])
    # Left without commit: rolled back with whatever else the unit wrote.
    assert await outbox.pending.oldest(10) == []
    await record(outbox.storage, event("r1", 1))
    assert [p.event.id for p in await outbox.pending.oldest(10)] == ["evt_r1_1"]


async def test_oldest_returns_at_most_the_limit_lowest_positions_first(outbox: Outbox) -> None:
    await record(outbox.storage, *(event("r1", n) for n in range(5)))

    assert [p.event.id for p in await outbox.pending.oldest(2)] == ["evt_r1_0", "evt_r1_1"]


async def test_remove_drops_just_those_positions_and_later_events_come_after(
    outbox: Outbox,
) -> None:
    await record(outbox.storage, *(event("r1", n) for n in range(3)))
    first, second, third = await outbox.pending.oldest(10)

    await outbox.pending.remove([first.position, third.position, 10**12])  # unknown: ignored
    await outbox.pending.remove([])
    await record(outbox.storage, event("r1", 3))

    left = await outbox.pending.oldest(10)
    assert [p.event.id for p in left] == ["evt_r1_1", "evt_r1_3"]
    assert left[0].position == second.position and left[1].position > third.position
    assert await outbox.pending.count() == 2


async def test_an_empty_recording_records_nothing(outbox: Outbox) -> None:
    await record(outbox.storage)
    assert await outbox.pending.count() == 0


async def test_one_lease_at_a_time_on_one_database(outbox: Outbox) -> None:
    other = outbox.another()
    async with (
        outbox.pending.lease() as first,
        outbox.pending.lease() as again,
        other.lease() as second,
    ):
        assert (first, again, second) == (True, False, False)
    # Released: the other relay takes its turn, and then the first is refused.
    async with other.lease() as second, outbox.pending.lease() as first:
        assert (second, first) == (True, False)
    async with outbox.pending.lease() as first:
        assert first


async def test_a_lease_is_released_when_its_block_fails(outbox: Outbox) -> None:
    with pytest.raises(RuntimeError):
        async with outbox.pending.lease() as held:
            assert held
            raise RuntimeError("the pass failed")
    async with outbox.another().lease() as next_turn:
        assert next_turn
