"""Dead letters through the worker's whole path on the embedded broker: a message that no
store could take is set aside, listed, and replayed once the cause is fixed, stored once."""

from __future__ import annotations

import asyncio

import pytest

from chat_adapters.memory.broker import InMemoryBroker
from chat_domain.entities import Membership, Message, Role, Room, RoomKind
from chat_domain.errors import InvalidInput
from chat_domain.usecases.consuming import MessageConsumer
from chat_domain.usecases.dead_letters import ListDeadLetters, ReplayDeadLetters
from chat_domain.usecases.messages import ListHistory, StoreMessages
from tests.unit.conftest import World

WAIT_S = 5.0


async def test_a_dead_letter_is_replayed_once_its_room_exists_and_stored_once(
    world: World,
) -> None:
    alice = await world.user("alice")
    broker = InMemoryBroker(partitions=2, max_attempts=2, retry_backoff=0.001)
    consuming = asyncio.create_task(
        MessageConsumer(broker, StoreMessages(world.storage, world.notifier)).run()
    )
    lost = Message("m-lost", "room-later", alice.id, "held up", world.clock.now())
    await broker.publish(lost)  # its room does not exist: every attempt fails

    async def set_aside() -> None:
        while not await ListDeadLetters(broker)(10):  # noqa: ASYNC110
            await asyncio.sleep(0.005)  # the consumer's retries run on their own

    await asyncio.wait_for(set_aside(), WAIT_S)
    (dead,) = await ListDeadLetters(broker)(10)
    assert (dead.message, dead.attempts) == (lost, 2)

    async with world.storage() as uow:  # the fix: the room, with alice in it
        await uow.rooms.add(Room("room-later", "later", RoomKind.GROUP, world.clock.now()))
        await uow.rooms.add_member(
            Membership("room-later", alice.id, Role.OWNER, world.clock.now())
        )
        await uow.commit()
    assert await ReplayDeadLetters(broker)(None) == ["m-lost"]
    await world.notifier.wait_for(alice.id, "message:new", 1, WAIT_S)
    # Stored after all, then found among the dead letters again (a replay interrupted
    # before the removal): a second replay stores nothing twice.
    await broker.publish(lost)
    await world.notifier.wait_for(alice.id, "message:new", 2, WAIT_S)
    await broker.close()
    await consuming

    page = await ListHistory(world.storage)(alice.id, "room-later", after_seq=0, limit=10)
    assert [(m.id, m.seq) for m in page.messages] == [("m-lost", 1)]
    assert await ListDeadLetters(broker)(10) == []


async def test_listing_and_replaying_refuse_what_makes_no_sense() -> None:
    broker = InMemoryBroker()
    with pytest.raises(InvalidInput):
        await ListDeadLetters(broker)(0)
    with pytest.raises(InvalidInput):
        await ReplayDeadLetters(broker)([])
    assert await ReplayDeadLetters(broker)(["nobody"]) == []
