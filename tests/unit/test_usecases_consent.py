"""Consent to membership on in-memory adapters: removals the room remembers, the owner's
hand-over, and blocks (rooms and presence)."""

from __future__ import annotations

import pytest

from chat_adapters.memory.presence import InMemoryPresenceTracker
from chat_domain.entities import Role, User
from chat_domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from chat_domain.usecases.blocks import BlockUser, ListBlocks, UnblockUser
from chat_domain.usecases.presence import PRESENCE, ConnectSocket, DisconnectSocket
from chat_domain.usecases.rooms import (
    AddMember,
    CreateGroupRoom,
    GetRoom,
    OpenDirectRoom,
    RemoveMember,
    TransferOwnership,
)
from tests.unit.conftest import World


def add(world: World) -> AddMember:
    return AddMember(world.storage, world.notifier, world.clock)


def remove(world: World) -> RemoveMember:
    return RemoveMember(world.storage, world.notifier, world.clock)


def block(world: World) -> BlockUser:
    return BlockUser(world.storage, world.notifier, world.clock)


def open_direct(world: World) -> OpenDirectRoom:
    return OpenDirectRoom(world.storage, world.notifier, world.clock, world.ids)


async def roles(world: World, viewer: User, room_id: str) -> dict[str, Role]:
    details = await GetRoom(world.storage)(viewer.id, room_id)
    return {m.membership.user_id: m.membership.role for m in details.members}


async def users(world: World, *names: str) -> list[User]:
    return [await world.user(name) for name in names]


# --- removals -----------------------------------------------------------------------------


async def test_a_member_cannot_add_back_whom_the_owner_removed(world: World) -> None:
    owner, member, evicted = await users(world, "owner", "member", "evicted")
    room = await world.room(owner, member, evicted)
    await world.message(owner, room, "said before and after the eviction")
    await remove(world)(owner.id, room.id, evicted.id)

    with pytest.raises(Forbidden):
        await add(world)(member.id, room.id, evicted.id)
    with pytest.raises(NotFound):
        await GetRoom(world.storage)(evicted.id, room.id)

    # The owner may take them back; then the removal is forgotten.
    _, added = await add(world)(owner.id, room.id, evicted.id)
    assert added
    await remove(world)(evicted.id, room.id, evicted.id)  # they leave by themselves
    _, added = await add(world)(member.id, room.id, evicted.id)
    assert added  # a user who left may be added by any member, as before


async def test_a_removal_is_per_room(world: World) -> None:
    owner, member, evicted = await users(world, "owner", "member", "evicted")
    first = await world.room(owner, member, evicted)
    second = await world.room(member, owner)
    await remove(world)(owner.id, first.id, evicted.id)
    _, added = await add(world)(owner.id, second.id, evicted.id)
    assert added


async def test_a_member_who_left_may_be_added_back_by_any_member(world: World) -> None:
    owner, member, leaver = await users(world, "owner", "member", "leaver")
    room = await world.room(owner, member, leaver)
    await remove(world)(leaver.id, room.id, leaver.id)
    _, added = await add(world)(member.id, room.id, leaver.id)
    assert added


# --- the owner's hand-over ----------------------------------------------------------------


async def test_the_owner_leaves_only_after_handing_the_room_over(world: World) -> None:
    owner, heir, other = await users(world, "owner", "heir", "other")
    room = await world.room(owner, heir, other)
    with pytest.raises(Conflict):
        await remove(world)(owner.id, room.id, owner.id)
    assert (await roles(world, owner, room.id))[owner.id] is Role.OWNER

    world.forget_events()
    details = await TransferOwnership(world.storage, world.notifier)(owner.id, room.id, heir.id)
    assert {m.membership.user_id: m.membership.role for m in details.members} == {
        owner.id: Role.MEMBER,
        heir.id: Role.OWNER,
        other.id: Role.MEMBER,
    }
    [event] = world.notifier.sent
    assert event.event == "room:owner_changed"
    assert set(event.user_ids) == {owner.id, heir.id, other.id}
    assert event.payload == {"room_id": room.id, "user_id": heir.id, "previous_owner_id": owner.id}

    await remove(world)(owner.id, room.id, owner.id)  # now a member: may leave
    # The new owner has the owner's duty, and powers.
    with pytest.raises(Conflict):
        await remove(world)(heir.id, room.id, heir.id)
    await remove(world)(heir.id, room.id, other.id)


async def test_the_last_member_may_leave_even_as_owner(world: World) -> None:
    owner, member = await users(world, "owner", "member")
    room = await world.room(owner, member)
    await remove(world)(member.id, room.id, member.id)
    await remove(world)(owner.id, room.id, owner.id)
    with pytest.raises(NotFound):
        await GetRoom(world.storage)(owner.id, room.id)


async def test_who_may_hand_a_room_over_and_to_whom(world: World) -> None:
    owner, member, outsider = await users(world, "owner", "member", "outsider")
    room = await world.room(owner, member)
    transfer = TransferOwnership(world.storage, world.notifier)
    with pytest.raises(Forbidden):
        await transfer(member.id, room.id, member.id)  # only the owner
    with pytest.raises(NotFound):
        await transfer(outsider.id, room.id, outsider.id)  # the room is not theirs to see
    with pytest.raises(NotFound):
        await transfer(owner.id, room.id, outsider.id)  # not a member
    world.forget_events()
    details = await transfer(owner.id, room.id, owner.id)  # to yourself: nothing changes
    assert world.notifier.sent == [] and len(details.members) == 2
    direct = (await open_direct(world)(owner.id, [member.id]))[0].room
    with pytest.raises(Forbidden):
        await transfer(owner.id, direct.id, member.id)  # a direct room has no owner
    assert await roles(world, owner, room.id) == {owner.id: Role.OWNER, member.id: Role.MEMBER}


# --- blocks -------------------------------------------------------------------------------


async def test_block_unblock_and_list(world: World) -> None:
    alice, bob, carol = await users(world, "alice", "bob", "carol")
    first, created = await block(world)(alice.id, bob.id)
    assert created and (first.block.blocked_id, first.username) == (bob.id, "bob")
    world.clock.advance(1)
    again, created = await block(world)(alice.id, bob.id)
    assert not created and again == first  # the first block stays
    await block(world)(alice.id, carol.id)
    assert [b.username for b in await ListBlocks(world.storage)(alice.id)] == ["bob", "carol"]
    assert await ListBlocks(world.storage)(bob.id) == []  # one way
    with pytest.raises(InvalidInput):
        await block(world)(alice.id, alice.id)
    with pytest.raises(NotFound):
        await block(world)(alice.id, "no-such-user")

    unblock = UnblockUser(world.storage, InMemoryPresenceTracker(), world.notifier)
    await unblock(alice.id, bob.id)
    await unblock(alice.id, bob.id)  # again: nothing to do
    await unblock(alice.id, "no-such-user")
    assert [b.username for b in await ListBlocks(world.storage)(alice.id)] == ["carol"]


async def test_a_blocked_user_cannot_put_the_blocker_in_a_room(world: World) -> None:
    blocker, blocked, friend = await users(world, "blocker", "blocked", "friend")
    direct = (await open_direct(world)(blocked.id, [blocker.id]))[0].room
    room = await world.room(blocked, friend)
    await block(world)(blocker.id, blocked.id)

    with pytest.raises(Forbidden):
        await open_direct(world)(blocked.id, [blocker.id])  # the pair's room exists
    await remove(world)(blocker.id, direct.id, blocker.id)
    with pytest.raises(Forbidden):
        await open_direct(world)(blocked.id, [blocker.id])
    with pytest.raises(Forbidden):
        await CreateGroupRoom(world.storage, world.notifier, world.clock, world.ids)(
            blocked.id, "trap", [friend.id, blocker.id]
        )
    with pytest.raises(Forbidden):
        await add(world)(blocked.id, room.id, blocker.id)
    assert set(await roles(world, blocked, room.id)) == {blocked.id, friend.id}

    # One way: the blocker may still reach the blocked user, and others may add the blocker.
    _, added = await add(world)(friend.id, room.id, blocker.id)
    assert added
    details, _ = await open_direct(world)(blocker.id, [blocked.id])
    assert details.room.id == direct.id

    # Lifted, the block stops refusing.
    await UnblockUser(world.storage, InMemoryPresenceTracker(), world.notifier)(
        blocker.id, blocked.id
    )
    other = await world.room(blocked, friend)
    _, added = await add(world)(blocked.id, other.id, blocker.id)
    assert added


def presence_events(world: World) -> list[tuple[set[str], dict[str, object]]]:
    return [(set(n.user_ids), n.payload) for n in world.notifier.sent if n.event == PRESENCE]


async def test_a_blocked_user_does_not_see_the_blockers_presence(world: World) -> None:
    blocker, blocked, friend = await users(world, "blocker", "blocked", "friend")
    await world.room(friend, blocker, blocked)  # whoever added whom, they share a room
    tracker = InMemoryPresenceTracker()
    connect = ConnectSocket(world.storage, tracker, world.notifier)
    disconnect = DisconnectSocket(world.storage, tracker, world.notifier)
    await connect(blocked.id, "s-blocked")
    await connect(blocker.id, "s-blocker")
    world.forget_events()

    await block(world)(blocker.id, blocked.id)
    # What the blocked user saw before does not linger: the blocker looks offline.
    assert presence_events(world) == [({blocked.id}, {"user_id": blocker.id, "online": False})]

    world.forget_events()
    await disconnect(blocker.id, "s-blocker")
    await connect(blocker.id, "s-blocker-2")
    assert presence_events(world) == [
        ({friend.id}, {"user_id": blocker.id, "online": False}),
        ({friend.id}, {"user_id": blocker.id, "online": True}),
    ]
    # The blocked user's snapshot leaves the blocker out; the blocker still sees them.
    await disconnect(blocked.id, "s-blocked")
    assert await connect(blocked.id, "s-blocked-2") == []
    assert await connect(blocker.id, "s-blocker-3") == [blocked.id]

    world.forget_events()
    await UnblockUser(world.storage, tracker, world.notifier)(blocker.id, blocked.id)
    assert presence_events(world) == [({blocked.id}, {"user_id": blocker.id, "online": True})]
    assert await connect(blocked.id, "s-blocked-3") == [blocker.id]


async def test_blocking_someone_in_no_shared_room_announces_nothing(world: World) -> None:
    alice, bob = await users(world, "alice", "bob")
    world.forget_events()
    await block(world)(alice.id, bob.id)
    await UnblockUser(world.storage, InMemoryPresenceTracker(), world.notifier)(alice.id, bob.id)
    assert world.notifier.sent == []
