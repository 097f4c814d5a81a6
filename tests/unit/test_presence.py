"""Presence use cases on in-memory adapters: edges only, to users who share a room."""

from __future__ import annotations

from chat_adapters.memory.presence import InMemoryPresenceTracker
from chat_domain.usecases.presence import PRESENCE, ConnectSocket, DisconnectSocket
from tests.unit.conftest import World


def use_cases(world: World) -> tuple[ConnectSocket, DisconnectSocket]:
    presence = InMemoryPresenceTracker()
    return (
        ConnectSocket(world.storage, presence, world.notifier),
        DisconnectSocket(world.storage, presence, world.notifier),
    )


def presence_events(world: World) -> list[tuple[tuple[str, ...], dict[str, object]]]:
    return [(n.user_ids, n.payload) for n in world.notifier.sent if n.event == PRESENCE]


async def test_first_socket_announces_online_to_room_mates_only(world: World) -> None:
    alice, bob, carol, stranger = [await world.user(n) for n in ("alice", "bob", "carol", "zed")]
    await world.room(alice, bob)
    await world.room(carol, alice)
    await world.room(stranger)
    world.forget_events()
    connect, _ = use_cases(world)

    await connect(alice.id, "s1")

    [(to, payload)] = presence_events(world)
    assert sorted(to) == sorted([bob.id, carol.id])
    assert payload == {"user_id": alice.id, "online": True}


async def test_a_second_socket_and_its_departure_change_nothing(world: World) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    await world.room(alice, bob)
    world.forget_events()
    connect, disconnect = use_cases(world)

    await connect(alice.id, "s1")
    await connect(alice.id, "s2")
    assert await disconnect(alice.id, "s1") is False
    assert [p["online"] for _, p in presence_events(world)] == [True]

    assert await disconnect(alice.id, "s2") is True
    assert [p for _, p in presence_events(world)][-1] == {"user_id": alice.id, "online": False}
    assert len(presence_events(world)) == 2


async def test_connect_answers_which_room_mates_are_online(world: World) -> None:
    alice, bob, carol = [await world.user(n) for n in ("alice", "bob", "carol")]
    await world.room(alice, bob, carol)
    connect, disconnect = use_cases(world)

    assert await connect(bob.id, "b1") == []
    await connect(carol.id, "c1")
    assert sorted(await connect(alice.id, "a1")) == sorted([bob.id, carol.id])
    await disconnect(carol.id, "c1")
    assert await connect(alice.id, "a2") == [bob.id]


async def test_unknown_or_repeated_disconnects_announce_nothing(world: World) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    await world.room(alice, bob)
    world.forget_events()
    connect, disconnect = use_cases(world)

    assert await disconnect(alice.id, "never-connected") is False
    await connect(alice.id, "s1")
    assert await disconnect(alice.id, "s1") is True
    assert await disconnect(alice.id, "s1") is False
    assert [p["online"] for _, p in presence_events(world)] == [True, False]


async def test_a_user_in_no_room_is_tracked_but_announced_to_nobody(world: World) -> None:
    loner = await world.user("loner")
    world.forget_events()
    connect, disconnect = use_cases(world)
    assert await connect(loner.id, "s1") == []
    assert await disconnect(loner.id, "s1") is True
    assert presence_events(world) == []
