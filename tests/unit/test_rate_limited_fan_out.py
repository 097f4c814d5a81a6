"""Client events that fan out to a whole room are rate limited per user: typing, receipts
and edits. Past the budget a call is refused and the room hears nothing of it."""

from __future__ import annotations

import pytest

from chat_adapters.memory.rate_limit import InMemoryRateLimiter
from chat_domain.entities import MarkerKind, Room, User
from chat_domain.errors import RateLimited
from chat_domain.ports.rate_limit import RateRule
from chat_domain.usecases.messages import EditMessage
from chat_domain.usecases.receipts import ListReceipts, MoveMarker
from chat_domain.usecases.rooms import RelayTyping
from tests.unit.conftest import World

BUDGET = RateRule("fan-out", per_second=0.001, burst=3)


async def crowded_room(world: World, members: int = 50) -> tuple[User, Room]:
    talker = await world.user("talker")
    others = [await world.user(f"member{i}") for i in range(members - 1)]
    room = await world.room(talker, *others)
    world.forget_events()
    return talker, room


async def test_typing_past_the_burst_is_refused_and_fans_out_nothing(world: World) -> None:
    talker, room = await crowded_room(world)
    relay = RelayTyping(world.storage, world.notifier, InMemoryRateLimiter(), BUDGET)
    for _ in range(3):
        await relay(talker.id, room.id, True)
    for _ in range(100):
        with pytest.raises(RateLimited) as refused:
            await relay(talker.id, room.id, True)
        assert refused.value.retry_after > 0
    assert len(world.notifier.sent) == 3  # 3 x 49 deliveries, not 103 x 49
    assert all(len(n.user_ids) == 49 for n in world.notifier.sent)


async def test_the_typing_budget_is_per_user_across_rooms(world: World) -> None:
    talker, listener = await world.user("talker"), await world.user("listener")
    room, other_room = await world.room(talker, listener), await world.room(talker, name="b")
    relay = RelayTyping(world.storage, world.notifier, InMemoryRateLimiter(), BUDGET)
    for room_id in (room.id, other_room.id, room.id):
        await relay(talker.id, room_id, True)
    with pytest.raises(RateLimited):  # another room does not open a new budget
        await relay(talker.id, other_room.id, False)
    await relay(listener.id, room.id, True)  # another user's budget is untouched


async def test_receipts_past_the_burst_are_refused_and_change_nothing(world: World) -> None:
    talker, room = await crowded_room(world, members=3)
    for i in range(5):
        await world.message(talker, room, f"m{i}")
    world.forget_events()
    move = MoveMarker(world.storage, world.notifier, InMemoryRateLimiter(), BUDGET)
    for seq in (1, 2):
        await move(talker.id, room.id, seq, MarkerKind.DELIVERED)
    await move(talker.id, room.id, 3, MarkerKind.READ)
    sent = len(world.notifier.sent)
    with pytest.raises(RateLimited):
        await move(talker.id, room.id, 5, MarkerKind.READ)
    assert len(world.notifier.sent) == sent
    mine = await ListReceipts(world.storage)(talker.id, room.id)
    assert [(m.delivered_seq, m.read_seq) for m in mine if m.user_id == talker.id] == [(3, 3)]


async def test_edits_are_charged_to_the_send_budget(world: World) -> None:
    talker, room = await crowded_room(world, members=3)
    message = await world.message(talker, room)
    world.forget_events()
    edit = EditMessage(world.storage, world.notifier, world.clock, InMemoryRateLimiter(), BUDGET)
    for i in range(3):
        await edit(talker.id, room.id, message.id, f"v{i}")
    with pytest.raises(RateLimited):
        await edit(talker.id, room.id, message.id, "one edit too many")
    assert [n.payload["body"] for n in world.notifier.sent] == ["v0", "v1", "v2"]
