"""The relay of recorded webhook events, on the in-memory storage and embedded outbox:
order, removal only after the outbox took them, and an outbox that is down, then back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from chat_adapters.memory.storage import InMemoryPendingWebhookEvents, InMemoryUnitOfWorkFactory
from chat_adapters.memory.system import FixedClock
from chat_adapters.webhooks.memory import InMemoryWebhookOutbox
from chat_domain.errors import Unavailable
from chat_domain.ports.webhooks import WebhookEvent
from chat_domain.usecases.webhook_relay import WebhookRelay

WAIT = 5.0


class ControlledOutbox(InMemoryWebhookOutbox):
    """The embedded outbox, which the test can take down, hold mid-publish, and watch."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.gate: asyncio.Event | None = None  # set: a publish waits for it
        self.entered = asyncio.Event()
        self.calls: list[list[str]] = []  # event ids of each publish the outbox took
        self._changed = asyncio.Event()

    async def publish(self, events: Sequence[WebhookEvent]) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise Unavailable("webhook outbox unavailable")
        await super().publish(events)
        self.calls.append([e.id for e in events])
        self._changed.set()

    @property
    def published(self) -> list[str]:
        return [event_id for call in self.calls for event_id in call]

    async def until_published(self, count: int) -> None:
        async def loop() -> None:
            while len(self.published) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), WAIT)


def event(room_id: str, n: int) -> WebhookEvent:
    return WebhookEvent(f"evt_{room_id}_{n}", "member.added", room_id, 0, {"n": n})


@pytest.fixture
def storage() -> InMemoryUnitOfWorkFactory:
    return InMemoryUnitOfWorkFactory(FixedClock())


@pytest.fixture
def pending(storage: InMemoryUnitOfWorkFactory) -> InMemoryPendingWebhookEvents:
    return InMemoryPendingWebhookEvents(storage)


@pytest.fixture
async def outbox() -> AsyncIterator[ControlledOutbox]:
    outbox = ControlledOutbox()
    await outbox.start()
    yield outbox
    await outbox.close()


async def record(storage: InMemoryUnitOfWorkFactory, *events: WebhookEvent) -> None:
    """What a use case does: the events in the change's unit of work, committed."""
    async with storage() as uow:
        await uow.webhook_events.add(events)
        await uow.commit()


async def test_events_leave_in_the_order_recorded_a_batch_after_the_other(
    storage: InMemoryUnitOfWorkFactory,
    pending: InMemoryPendingWebhookEvents,
    outbox: ControlledOutbox,
) -> None:
    await record(storage, event("a", 0), event("b", 0))
    await record(storage, event("a", 1))
    await record(storage, event("b", 1), event("a", 2))
    relay = WebhookRelay(pending, outbox, batch=2)

    assert await relay.relay() == 5

    assert outbox.calls == [["evt_a_0", "evt_b_0"], ["evt_a_1", "evt_b_1"], ["evt_a_2"]]
    assert await pending.count() == 0


async def test_events_are_removed_only_once_the_outbox_took_them(
    storage: InMemoryUnitOfWorkFactory,
    pending: InMemoryPendingWebhookEvents,
    outbox: ControlledOutbox,
) -> None:
    await record(storage, event("a", 0), event("a", 1))
    outbox.gate = asyncio.Event()
    passing = asyncio.create_task(WebhookRelay(pending, outbox).relay())
    await asyncio.wait_for(outbox.entered.wait(), WAIT)

    assert await pending.count() == 2  # handed over, not yet confirmed: still recorded

    outbox.gate.set()
    assert await asyncio.wait_for(passing, WAIT) == 2
    assert await pending.count() == 0


async def test_an_outbox_down_keeps_the_events_and_they_leave_with_their_ids_when_back(
    storage: InMemoryUnitOfWorkFactory,
    pending: InMemoryPendingWebhookEvents,
    outbox: ControlledOutbox,
) -> None:
    await record(storage, event("a", 0), event("b", 0))
    await record(storage, event("a", 1))
    relay = WebhookRelay(pending, outbox, batch=2)
    outbox.down = True

    with pytest.raises(Unavailable):
        await relay.relay()
    assert [p.event.id for p in await pending.oldest(10)] == ["evt_a_0", "evt_b_0", "evt_a_1"]

    outbox.down = False
    assert await relay.relay() == 3
    assert outbox.published == ["evt_a_0", "evt_b_0", "evt_a_1"]
    assert await pending.count() == 0


async def test_an_outbox_that_fails_mid_pass_keeps_what_it_did_not_confirm(
    storage: InMemoryUnitOfWorkFactory,
    pending: InMemoryPendingWebhookEvents,
    outbox: ControlledOutbox,
) -> None:
    await record(storage, *(event("a", n) for n in range(4)))

    class FailsSecond(ControlledOutbox):
        async def publish(self, events: Sequence[WebhookEvent]) -> None:
            self.down = len(self.calls) >= 1
            await super().publish(events)

    failing = FailsSecond()
    with pytest.raises(Unavailable):
        await WebhookRelay(pending, failing, batch=2).relay()

    assert failing.published == ["evt_a_0", "evt_a_1"]
    assert [p.event.id for p in await pending.oldest(10)] == ["evt_a_2", "evt_a_3"]


async def test_one_relay_at_a_time_the_other_leaves_the_events_to_it(
    storage: InMemoryUnitOfWorkFactory,
    pending: InMemoryPendingWebhookEvents,
    outbox: ControlledOutbox,
) -> None:
    await record(storage, event("a", 0))
    outbox.gate = asyncio.Event()
    first = asyncio.create_task(WebhookRelay(pending, outbox).relay())
    await asyncio.wait_for(outbox.entered.wait(), WAIT)

    assert await WebhookRelay(pending, outbox).relay() == 0  # the lease is taken

    outbox.gate.set()
    assert await asyncio.wait_for(first, WAIT) == 1
    assert outbox.published == ["evt_a_0"]  # once


async def test_running_it_relays_on_a_nudge_and_polls_for_what_was_left(
    storage: InMemoryUnitOfWorkFactory,
    pending: InMemoryPendingWebhookEvents,
    outbox: ControlledOutbox,
) -> None:
    # An hour between polls: only the nudge can move the first event in time.
    relay = WebhookRelay(pending, outbox, interval=3600)
    running = asyncio.create_task(relay.run())
    await record(storage, event("a", 0))
    relay.nudge()
    await outbox.until_published(1)
    relay.stop()
    await asyncio.wait_for(running, WAIT)

    # Down when nudged: the poll moves it once the outbox is back.
    polling = WebhookRelay(pending, outbox, interval=0.01)
    outbox.down = True
    await record(storage, event("a", 1))
    running = asyncio.create_task(polling.run())
    polling.nudge()
    outbox.entered.clear()
    await asyncio.wait_for(outbox.entered.wait(), WAIT)  # tried, and refused
    outbox.down = False
    await outbox.until_published(2)
    polling.stop()
    await asyncio.wait_for(running, WAIT)
    assert outbox.published == ["evt_a_0", "evt_a_1"]


async def test_uncommitted_events_are_not_relayed_and_a_rollback_drops_them(
    storage: InMemoryUnitOfWorkFactory,
    pending: InMemoryPendingWebhookEvents,
    outbox: ControlledOutbox,
) -> None:
    async with storage() as uow:
        await uow.webhook_events.add([event("a", 0)])
        assert await WebhookRelay(pending, outbox).relay() == 0  # not committed yet
    # Left without commit: rolled back.
    assert await pending.count() == 0
    assert outbox.published == []
