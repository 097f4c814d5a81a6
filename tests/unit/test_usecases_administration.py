"""Operators' use cases: the room listing and retention."""

from __future__ import annotations

import pytest

from chat_domain.errors import InvalidInput
from chat_domain.usecases.administration import ListAllRooms, PruneMessages
from chat_domain.usecases.messages import ListHistory
from tests.unit.conftest import World

DAY = 24 * 3600


async def test_prune_erases_only_what_is_older_than_the_retention(world: World) -> None:
    alice = await world.user("alice")
    room = await world.room(alice)
    old = [await world.message(alice, room, f"old {i}") for i in range(5)]
    world.clock.advance(10 * DAY)
    recent = await world.message(alice, room, "recent")
    world.clock.advance(5 * DAY)

    world.forget_events()
    prune = PruneMessages(world.storage, world.clock, batch=2)  # three batches: 2, 2, 1
    assert await prune(older_than_days=7) == 5
    page = await ListHistory(world.storage)(alice.id, room.id, after_seq=0, limit=50)
    bodies = {m.seq: (m.body, m.deleted) for m in page.messages}
    assert [bodies[m.seq] for m in old] == [("", True)] * 5
    assert bodies[recent.seq] == ("recent", False)
    assert sorted(bodies) == [1, 2, 3, 4, 5, 6]  # tombstones keep every seq
    assert await prune(older_than_days=7) == 0
    assert world.notifier.sent == []  # old messages are not announced again


async def test_prune_refuses_an_age_under_a_day(world: World) -> None:
    with pytest.raises(InvalidInput):
        await PruneMessages(world.storage, world.clock)(older_than_days=0)


async def test_rooms_are_listed_newest_first_with_their_member_counts(world: World) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    first = await world.room(alice)
    world.clock.advance(1)
    second = await world.room(alice, bob)
    listing = await ListAllRooms(world.storage)(limit=10)
    assert [(r.room.id, r.member_count) for r in listing] == [(second.id, 2), (first.id, 1)]
    with pytest.raises(InvalidInput):
        await ListAllRooms(world.storage)(limit=0)
