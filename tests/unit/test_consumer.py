"""The worker's consumer on the embedded broker: group commit without losing order or isolation."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from chat_adapters.memory.broker import InMemoryBroker
from chat_domain.entities import Message
from chat_domain.ports.broker import MessageBatchHandler
from chat_domain.usecases.consuming import MessageConsumer
from chat_domain.usecases.messages import StoreMessages
from tests.unit.conftest import World

WAIT_S = 5.0


class ObservedStore(StoreMessages):
    """StoreMessages that remembers the size of each transaction it ran."""

    def __init__(self, world: World) -> None:
        super().__init__(world.storage, world.notifier)
        self.batches: list[int] = []

    async def __call__(self, accepted: Sequence[Message]) -> list[Message]:
        self.batches.append(len(accepted))
        return await super().__call__(accepted)


async def consume(world: World, broker: InMemoryBroker, store: StoreMessages) -> asyncio.Task[None]:
    return asyncio.create_task(MessageConsumer(broker, store).run())


async def test_messages_of_several_rooms_share_transactions_and_keep_each_rooms_order(
    world: World,
) -> None:
    alice = await world.user("alice")
    rooms = [await world.room(alice, name=f"r{i}") for i in range(8)]
    broker = InMemoryBroker(partitions=8)
    store = ObservedStore(world)
    consuming = await consume(world, broker, store)
    # Published while the consumer is busy: they wait for the next transaction together.
    for n in range(5):
        for room in rooms:
            await broker.publish(
                Message(world.ids.new_id(), room.id, alice.id, f"{n}", world.clock.now())
            )

    await world.notifier.wait_for(alice.id, "message:new", 1, WAIT_S)  # it is consuming
    await broker.close()  # drains: every accepted message is stored or dead-lettered first
    await consuming
    events = world.notifier.events_for(alice.id, "message:new")

    assert max(store.batches) > 1 and sum(store.batches) == 40
    for room in rooms:
        mine = [e for e in events if e["room_id"] == room.id]
        assert [(e["seq"], e["body"]) for e in mine] == [(n + 1, f"{n}") for n in range(5)]


async def test_a_message_that_fails_fails_alone_and_the_rest_of_its_batch_is_stored(
    world: World,
) -> None:
    alice = await world.user("alice")
    good_rooms = [await world.room(alice, name=f"r{i}") for i in range(3)]
    broker = InMemoryBroker(partitions=8, max_attempts=2, retry_backoff=0.001)
    bad = Message(world.ids.new_id(), "no-such-room", alice.id, "bad", world.clock.now())
    await broker.publish(bad)
    for room in good_rooms:
        await broker.publish(
            Message(world.ids.new_id(), room.id, alice.id, "ok", world.clock.now())
        )
    store = ObservedStore(world)
    consuming = await consume(world, broker, store)

    await world.notifier.wait_for(alice.id, "message:new", 3, WAIT_S)
    await broker.close()  # after the bad message's last attempt
    await consuming
    events = world.notifier.events_for(alice.id, "message:new")

    assert store.batches[0] == 4  # all four went together first
    assert sorted(e["room_id"] for e in events) == sorted(r.id for r in good_rooms)
    assert [d.message for d in await broker.dead_letters(10)] == [bad]


@pytest.mark.parametrize("count", [1, 3])
async def test_a_quiet_consumer_stores_each_message_at_once(world: World, count: int) -> None:
    alice = await world.user("alice")
    room = await world.room(alice)
    broker = InMemoryBroker(partitions=1)
    store = ObservedStore(world)
    consuming = await consume(world, broker, store)
    for n in range(count):
        await broker.publish(
            Message(world.ids.new_id(), room.id, alice.id, f"{n}", world.clock.now())
        )
        await world.notifier.wait_for(alice.id, "message:new", n + 1, WAIT_S)
    await broker.close()
    await consuming
    assert store.batches == [1] * count  # one partition: a room's next waits for its ack


async def test_a_rooms_backlog_is_stored_in_one_transaction_in_order(world: World) -> None:
    alice = await world.user("alice")
    room = await world.room(alice)
    broker = InMemoryBroker(partitions=1)
    for n in range(10):  # waiting before the consumer starts: one partition's batch
        await broker.publish(
            Message(world.ids.new_id(), room.id, alice.id, f"{n}", world.clock.now())
        )
    store = ObservedStore(world)
    consuming = await consume(world, broker, store)
    await world.notifier.wait_for(alice.id, "message:new", 10, WAIT_S)
    await broker.close()
    await consuming
    events = world.notifier.events_for(alice.id, "message:new")
    assert store.batches == [10]
    assert [(e["seq"], e["body"]) for e in events] == [(n + 1, f"{n}") for n in range(10)]


async def test_a_bad_message_in_a_rooms_batch_fails_alone_and_the_room_keeps_its_order(
    world: World,
) -> None:
    alice = await world.user("alice")
    room = await world.room(alice)
    broker = InMemoryBroker(partitions=1, max_attempts=2, retry_backoff=0.001)
    first = Message(world.ids.new_id(), room.id, alice.id, "first", world.clock.now())
    # Same partition (there is one), a room that does not exist: storing it fails.
    bad = Message(world.ids.new_id(), "no-such-room", alice.id, "bad", world.clock.now())
    last = Message(world.ids.new_id(), room.id, alice.id, "last", world.clock.now())
    for message in (first, bad, last):
        await broker.publish(message)
    store = ObservedStore(world)
    consuming = await consume(world, broker, store)
    await world.notifier.wait_for(alice.id, "message:new", 2, WAIT_S)
    await broker.close()
    await consuming
    events = world.notifier.events_for(alice.id, "message:new")
    assert [(e["seq"], e["body"]) for e in events] == [(1, "first"), (2, "last")]
    # The batch of three failed, then each alone: first, bad twice (max_attempts), last.
    assert store.batches == [3, 1, 1, 1, 1]
    assert [d.message for d in await broker.dead_letters(10)] == [bad]


class HandOverWatch(InMemoryBroker):
    """The embedded broker, telling when it has handed the consumer a batch."""

    def __init__(self, partitions: int) -> None:
        super().__init__(partitions=partitions)
        self.handed = 0
        self.handed_one = asyncio.Event()

    async def consume(self, handler: MessageBatchHandler) -> None:
        async def watched(batch: Sequence[Message]) -> None:
            self.handed += 1
            self.handed_one.set()
            await handler(batch)

        await super().consume(watched)


@pytest.mark.parametrize(("linger", "transactions"), [(0.0, [1, 1]), (2.0, [2])])
async def test_a_lingering_consumer_stores_a_batch_that_came_soon_after_in_the_same_transaction(
    world: World, linger: float, transactions: list[int]
) -> None:
    alice = await world.user("alice")
    rooms = [await world.room(alice, name=f"r{i}") for i in range(2)]
    broker = HandOverWatch(partitions=64)
    store = ObservedStore(world)
    consuming = asyncio.create_task(MessageConsumer(broker, store, linger_seconds=linger).run())
    messages = [Message(world.ids.new_id(), r.id, alice.id, "hi", world.clock.now()) for r in rooms]
    await broker.publish(messages[0])
    await asyncio.wait_for(broker.handed_one.wait(), WAIT_S)  # its flush has begun
    await broker.publish(messages[1])  # a partition of its own (asserted below)
    await world.notifier.wait_for(alice.id, "message:new", 2, WAIT_S)
    await broker.close()
    await consuming
    assert broker.handed == 2
    assert store.batches == transactions
