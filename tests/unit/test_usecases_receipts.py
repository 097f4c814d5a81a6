"""Delivery and read markers on in-memory adapters: forward only, one receipt per change."""

from __future__ import annotations

import pytest

from chat_domain.entities import MarkerKind, Membership, Room, User
from chat_domain.errors import InvalidInput, NotFound
from chat_domain.usecases.receipts import ListReceipts, MoveMarker
from chat_domain.usecases.rooms import ListRooms
from tests.unit.conftest import World


def receipt(room: Room, user: User, seq: int, kind: str) -> dict[str, object]:
    return {"room_id": room.id, "user_id": user.id, "seq": seq, "kind": kind}


async def chat_of(world: World, messages: int) -> tuple[User, User, Room]:
    alice, bob = await world.user("alice"), await world.user("bob")
    room = await world.room(alice, bob)
    for i in range(messages):
        await world.message(alice, room, f"m{i}")
    world.forget_events()
    return alice, bob, room


async def markers(world: World, who: User, room: Room) -> dict[str, tuple[int, int]]:
    found: list[Membership] = await ListReceipts(world.storage)(who.id, room.id)
    return {m.user_id: (m.delivered_seq, m.read_seq) for m in found}


async def test_delivered_moves_one_marker_and_tells_the_room(world: World) -> None:
    alice, bob, room = await chat_of(world, 3)
    await MoveMarker(world.storage, world.notifier)(bob.id, room.id, 2, MarkerKind.DELIVERED)
    [event] = world.notifier.sent
    assert event.event == "receipt" and set(event.user_ids) == {alice.id, bob.id}
    assert event.payload == receipt(room, bob, 2, "delivered")
    assert await markers(world, alice, room) == {alice.id: (0, 0), bob.id: (2, 0)}


async def test_read_drags_delivered_along(world: World) -> None:
    alice, bob, room = await chat_of(world, 3)
    move = MoveMarker(world.storage, world.notifier)
    await move(bob.id, room.id, 2, MarkerKind.READ)
    assert [n.payload for n in world.notifier.sent] == [
        receipt(room, bob, 2, "delivered"),
        receipt(room, bob, 2, "read"),
    ]
    # Delivered already past it: only the read marker moves, one receipt.
    world.forget_events()
    await move(bob.id, room.id, 3, MarkerKind.DELIVERED)
    await move(bob.id, room.id, 3, MarkerKind.READ)
    assert [n.payload for n in world.notifier.sent] == [
        receipt(room, bob, 3, "delivered"),
        receipt(room, bob, 3, "read"),
    ]
    assert await markers(world, bob, room) == {alice.id: (0, 0), bob.id: (3, 3)}


async def test_markers_never_move_backwards_and_say_nothing_then(world: World) -> None:
    alice, bob, room = await chat_of(world, 3)
    move = MoveMarker(world.storage, world.notifier)
    await move(bob.id, room.id, 3, MarkerKind.READ)
    world.forget_events()
    for seq, kind in (
        (1, MarkerKind.DELIVERED),
        (2, MarkerKind.READ),
        (3, MarkerKind.READ),
        (0, MarkerKind.READ),
    ):
        await move(bob.id, room.id, seq, kind)
    assert world.notifier.sent == []
    assert await markers(world, alice, room) == {alice.id: (0, 0), bob.id: (3, 3)}


async def test_a_marker_stops_at_the_last_message(world: World) -> None:
    alice, bob, room = await chat_of(world, 2)
    await MoveMarker(world.storage, world.notifier)(bob.id, room.id, 50, MarkerKind.READ)
    assert world.notifier.sent[-1].payload == receipt(room, bob, 2, "read")
    assert await markers(world, bob, room) == {alice.id: (0, 0), bob.id: (2, 2)}


async def test_markers_are_for_members(world: World) -> None:
    _, bob, room = await chat_of(world, 1)
    mallory = await world.user("mallory")
    move = MoveMarker(world.storage, world.notifier)
    with pytest.raises(InvalidInput):
        await move(bob.id, room.id, -1, MarkerKind.READ)
    with pytest.raises(NotFound):
        await move(mallory.id, room.id, 1, MarkerKind.READ)
    with pytest.raises(NotFound):
        await ListReceipts(world.storage)(mallory.id, room.id)
    assert world.notifier.sent == []


async def test_unread_count_follows_the_read_marker(world: World) -> None:
    alice, bob, room = await chat_of(world, 3)
    list_rooms = ListRooms(world.storage)

    async def unread(who: User) -> int:
        [summary] = await list_rooms(who.id)
        return summary.unread_count

    assert (await unread(bob), await unread(alice)) == (3, 0)
    await MoveMarker(world.storage, world.notifier)(bob.id, room.id, 1, MarkerKind.READ)
    assert await unread(bob) == 2
    # Delivered is not read.
    await MoveMarker(world.storage, world.notifier)(bob.id, room.id, 3, MarkerKind.DELIVERED)
    assert await unread(bob) == 2
    await world.message(bob, room, "reply")  # one's own message is never unread
    assert (await unread(bob), await unread(alice)) == (2, 1)
