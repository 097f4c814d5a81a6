"""Accounts, rooms, members and typing on in-memory adapters.

The account use cases (register, log in, authenticate, search) live here too: every room
test starts from them, and they are few.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chat_adapters.memory.storage import InMemoryRoomRepository
from chat_adapters.memory.system import FixedClock
from chat_adapters.security.tokens import JwtTokenService
from chat_domain.entities import Role, Room, RoomKind, User
from chat_domain.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    LimitExceeded,
    NotFound,
    Unauthorized,
)
from chat_domain.usecases.auth import Authenticate, LogIn, RegisterUser, SearchUsers
from chat_domain.usecases.rooms import (
    AddMember,
    CreateGroupRoom,
    GetRoom,
    ListRooms,
    OpenDirectRoom,
    RelayTyping,
    RemoveMember,
)
from tests.unit.conftest import PASSWORD, World

# --- accounts -----------------------------------------------------------------------------


async def test_register_normalises_and_hashes(world: World) -> None:
    register = RegisterUser(world.storage, world.hasher, world.clock, world.ids)
    user = await register("  Alice.B ", PASSWORD, None)
    assert (user.username, user.display_name, user.created_at) == (
        "alice.b",
        "alice.b",
        world.clock.now(),
    )
    assert user.password_hash != PASSWORD and await world.hasher.verify(
        user.password_hash, PASSWORD
    )
    named = await register("bob", PASSWORD, "  Bob B.  ")
    assert named.display_name == "Bob B." and named.id != user.id


async def test_register_refuses_a_taken_name_and_bad_input(world: World) -> None:
    register = RegisterUser(world.storage, world.hasher, world.clock, world.ids)
    await register("alice", PASSWORD, None)
    with pytest.raises(Conflict):
        await register("ALICE", PASSWORD, None)
    for username, password, display_name in (
        ("al", PASSWORD, None),
        ("a" * 33, PASSWORD, None),
        ("no spaces", PASSWORD, None),
        ("carol", "short", None),
        ("carol", "x" * 129, None),
        ("carol", PASSWORD, "d" * 65),
    ):
        with pytest.raises(InvalidInput):
            await register(username, password, display_name)
    assert await SearchUsers(world.storage)("") == [await _by_name(world, "alice")]


async def _by_name(world: World, username: str) -> User:
    async with world.storage() as uow:
        user = await uow.users.get_by_username(username)
    assert user is not None
    return user


async def test_log_in_and_authenticate(world: World, tokens: JwtTokenService) -> None:
    alice = await world.user("alice")
    session = await LogIn(world.storage, world.hasher, tokens)(" Alice ", PASSWORD)
    assert session.user == alice and session.token.expires_in > 0
    assert await Authenticate(world.storage, tokens)(session.token.token) == alice

    log_in = LogIn(world.storage, world.hasher, tokens)
    with pytest.raises(Unauthorized) as wrong_password:
        await log_in("alice", "not the password")
    with pytest.raises(Unauthorized) as unknown_user:
        await log_in("nobody", PASSWORD)
    # One answer for both, so usernames cannot be probed.
    assert wrong_password.value.message == unknown_user.value.message


async def test_authenticate_refuses_what_it_cannot_trust(
    world: World, tokens: JwtTokenService
) -> None:
    authenticate = Authenticate(world.storage, tokens)
    expired = JwtTokenService(
        "unit-test-signing-key-of-32-bytes!!",
        FixedClock(datetime.now(UTC) - timedelta(days=2)),
        ttl_seconds=60,
    )
    alice = await world.user("alice")
    for token in (
        None,
        "",
        "garbage",
        expired.issue(alice.id).token,
        tokens.issue("a-user-that-does-not-exist").token,
        JwtTokenService("another-key-another-key-another-key", world.clock).issue(alice.id).token,
    ):
        with pytest.raises(Unauthorized):
            await authenticate(token)


async def test_a_token_verified_before_still_expires_on_time() -> None:
    clock = FixedClock(datetime.now(UTC))
    tokens = JwtTokenService("unit-test-signing-key-of-32-bytes!!", clock, ttl_seconds=60)
    token = tokens.issue("alice-id").token
    assert tokens.verify(token) == "alice-id"
    clock.advance(59)
    assert tokens.verify(token) == "alice-id"  # remembered, still valid
    clock.advance(1)
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify(token)
    with pytest.raises(Unauthorized):  # and stays refused, remembered or not
        tokens.verify(token)
    # A tampered copy is checked in full, not taken for the remembered one.
    with pytest.raises(Unauthorized):
        JwtTokenService("unit-test-signing-key-of-32-bytes!!", clock).verify(token[:-2] + "xx")


async def test_search_by_prefix(world: World) -> None:
    for name in ("anna", "ann_b", "annie", "bob"):
        await world.user(name)
    found = await SearchUsers(world.storage)(" ANN ")
    assert [u.username for u in found] == ["ann_b", "anna", "annie"]
    assert await SearchUsers(world.storage)("zed") == []
    for i in range(25):
        await world.user(f"many{i:02d}")
    assert len(await SearchUsers(world.storage)("many")) == 20


# --- group rooms ------------------------------------------------------------------------


async def test_create_group_room(world: World) -> None:
    alice, bob, carol = (
        await world.user("alice"),
        await world.user("bob"),
        await world.user("carol"),
    )
    create = CreateGroupRoom(world.storage, world.notifier, world.clock, world.ids)
    details = await create(alice.id, "  Lunch ", [bob.id, carol.id, bob.id, alice.id])
    room = details.room
    assert (room.name, room.kind, room.last_seq, room.created_at) == (
        "Lunch",
        RoomKind.GROUP,
        0,
        world.clock.now(),
    )
    roles = {m.membership.user_id: m.membership.role for m in details.members}
    assert roles == {alice.id: Role.OWNER, bob.id: Role.MEMBER, carol.id: Role.MEMBER}
    assert details.members[0].username == "alice"  # the owner first
    for user in (alice, bob, carol):
        assert world.notifier.events_for(user.id, "room:member_added") == [
            {"room_id": room.id, "user_id": user.id}
        ]


async def test_create_group_room_checks_its_input(world: World) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    create = CreateGroupRoom(world.storage, world.notifier, world.clock, world.ids, max_members=2)
    for name, members in (("  ", []), ("n" * 101, []), ("ok", ["no-such-user"])):
        with pytest.raises(InvalidInput):
            await create(alice.id, name, members)
    carol = await world.user("carol")
    with pytest.raises(LimitExceeded):
        await create(alice.id, "crowd", [bob.id, carol.id])
    assert await ListRooms(world.storage)(alice.id) == []


async def test_get_room_is_for_members(world: World) -> None:
    alice, bob, mallory = (
        await world.user("alice"),
        await world.user("bob"),
        await world.user("mallory"),
    )
    room = await world.room(alice, bob)
    details = await GetRoom(world.storage)(bob.id, room.id)
    assert details.room == room and [m.username for m in details.members] == ["alice", "bob"]
    for who, room_id in ((mallory, room.id), (alice, "no-such-room")):
        with pytest.raises(NotFound):
            await GetRoom(world.storage)(who.id, room_id)


async def test_list_rooms_most_recent_activity_first(world: World) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    older = await world.room(alice, bob, name="older")
    world.clock.advance(60)
    newer = await world.room(alice, name="newer")
    assert [s.room.id for s in await ListRooms(world.storage)(alice.id)] == [newer.id, older.id]
    last = await world.message(bob, older, "latest")
    summaries = await ListRooms(world.storage)(alice.id)
    assert [s.room.id for s in summaries] == [older.id, newer.id]
    assert summaries[0].last_message == last and summaries[0].unread_count == 1
    assert summaries[0].room.last_seq == 1
    assert summaries[1].last_message is None and summaries[1].unread_count == 0
    assert [s.room.id for s in await ListRooms(world.storage)(bob.id)] == [older.id]


# --- members ------------------------------------------------------------------------------


async def test_any_member_adds_and_everyone_hears_it(world: World) -> None:
    alice, bob, carol = (
        await world.user("alice"),
        await world.user("bob"),
        await world.user("carol"),
    )
    room = await world.room(alice, bob)
    world.forget_events()
    add = AddMember(world.storage, world.notifier, world.clock)
    member, added = await add(bob.id, room.id, carol.id)
    assert added and member.username == "carol" and member.membership.role is Role.MEMBER
    [event] = world.notifier.sent
    assert event.event == "room:member_added" and set(event.user_ids) == {
        alice.id,
        bob.id,
        carol.id,
    }
    assert event.payload == {"room_id": room.id, "user_id": carol.id}
    # From then on the room's messages reach her.
    await world.message(alice, room)
    assert len(world.notifier.events_for(carol.id, "message:new")) == 1
    # Adding again changes and tells nothing.
    world.forget_events()
    again, added_again = await add(alice.id, room.id, carol.id)
    assert not added_again and again.membership == member.membership
    assert world.notifier.sent == []


async def test_add_member_errors(world: World) -> None:
    alice, bob, carol = (
        await world.user("alice"),
        await world.user("bob"),
        await world.user("carol"),
    )
    mallory = await world.user("mallory")
    room = await world.room(alice, bob)
    add = AddMember(world.storage, world.notifier, world.clock, max_members=2)
    with pytest.raises(NotFound):
        await add(mallory.id, room.id, mallory.id)
    with pytest.raises(NotFound):
        await add(alice.id, room.id, "no-such-user")
    with pytest.raises(LimitExceeded):
        await add(alice.id, room.id, carol.id)
    direct, _ = await OpenDirectRoom(world.storage, world.notifier, world.clock, world.ids)(
        alice.id, [bob.id]
    )
    with pytest.raises(Forbidden):
        await AddMember(world.storage, world.notifier, world.clock)(
            alice.id, direct.room.id, carol.id
        )


async def test_remove_member(world: World) -> None:
    alice, bob, carol = (
        await world.user("alice"),
        await world.user("bob"),
        await world.user("carol"),
    )
    room = await world.room(alice, bob, carol)
    remove = RemoveMember(world.storage, world.notifier, world.clock)
    with pytest.raises(Forbidden):
        await remove(bob.id, room.id, carol.id)  # only the owner removes others
    world.forget_events()
    await remove(alice.id, room.id, bob.id)
    [event] = world.notifier.sent
    # The removed member hears it too, then nothing more of the room.
    assert event.event == "room:member_removed" and set(event.user_ids) == {
        alice.id,
        bob.id,
        carol.id,
    }
    assert event.payload == {"room_id": room.id, "user_id": bob.id}
    world.forget_events()
    for _ in range(3):
        await world.message(alice, room)
    await RelayTyping(world.storage, world.notifier)(carol.id, room.id, True)
    assert [n for n in world.notifier.sent if bob.id in n.user_ids] == []
    with pytest.raises(NotFound):
        await GetRoom(world.storage)(bob.id, room.id)
    with pytest.raises(NotFound):
        await remove(bob.id, room.id, bob.id)  # no longer a member
    with pytest.raises(NotFound):
        await remove(alice.id, room.id, bob.id)  # nobody to remove
    await remove(carol.id, room.id, carol.id)  # anyone may leave
    assert [
        m.membership.user_id for m in (await GetRoom(world.storage)(alice.id, room.id)).members
    ] == [alice.id]


# --- direct rooms ---------------------------------------------------------------------------


async def test_open_direct_room_once_per_pair(world: World) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    open_direct = OpenDirectRoom(world.storage, world.notifier, world.clock, world.ids)
    details, created = await open_direct(alice.id, [bob.id])
    assert created and details.room.kind is RoomKind.DIRECT
    assert details.room.direct_key == Room.direct_key_for(bob.id, alice.id)
    assert {m.membership.user_id: m.membership.role for m in details.members} == {
        alice.id: Role.MEMBER,
        bob.id: Role.MEMBER,
    }
    assert len(world.notifier.events_for(bob.id, "room:member_added")) == 1
    for who, others in ((alice, [bob.id]), (bob, [alice.id]), (bob, [alice.id, bob.id])):
        again, created_again = await open_direct(who.id, others)
        assert not created_again and again.room == details.room
    assert len(world.notifier.sent) == 2  # re-opening announces nothing


@pytest.mark.parametrize("others", [[], ["self"], ["bob", "carol"], ["no-such-user"]])
async def test_a_direct_room_needs_exactly_one_other_user(world: World, others: list[str]) -> None:
    users = {name: await world.user(name) for name in ("alice", "bob", "carol")}
    ids = [users["alice"].id if o == "self" else users[o].id if o in users else o for o in others]
    with pytest.raises(InvalidInput):
        await OpenDirectRoom(world.storage, world.notifier, world.clock, world.ids)(
            users["alice"].id, ids
        )
    assert await ListRooms(world.storage)(users["alice"].id) == []


async def test_a_pair_racing_to_open_gets_the_one_room(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    open_direct = OpenDirectRoom(world.storage, world.notifier, world.clock, world.ids)
    theirs, _ = await open_direct(bob.id, [alice.id])
    # Alice looked before bob's room was committed: her first read saw no room.
    real_get_direct = InMemoryRoomRepository.get_direct
    stale = [True]

    async def get_direct(self: InMemoryRoomRepository, key: str) -> Room | None:
        if stale.pop() if stale else False:
            return None
        return await real_get_direct(self, key)

    monkeypatch.setattr(InMemoryRoomRepository, "get_direct", get_direct)
    mine, created = await open_direct(alice.id, [bob.id])
    assert stale == []  # the stale read happened, so the insert hit the pair's room: Conflict
    assert not created and mine.room == theirs.room
    assert len(await ListRooms(world.storage)(alice.id)) == 1


async def test_reopening_a_direct_room_brings_back_only_the_caller(world: World) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    open_direct = OpenDirectRoom(world.storage, world.notifier, world.clock, world.ids)
    details, _ = await open_direct(alice.id, [bob.id])
    room = details.room
    await world.message(alice, room, "before")
    await RemoveMember(world.storage, world.notifier, world.clock)(bob.id, room.id, bob.id)
    world.forget_events()

    # Alice gets the pair's room back, without bob: he left, and nobody brings him back.
    again, created = await open_direct(alice.id, [bob.id])
    assert not created and again.room.id == room.id
    assert {m.membership.user_id for m in again.members} == {alice.id}
    assert world.notifier.sent == []
    with pytest.raises(NotFound):
        await GetRoom(world.storage)(bob.id, room.id)
    assert await ListRooms(world.storage)(bob.id) == []
    await world.message(alice, room, "while bob is away")
    assert world.notifier.events_for(bob.id, "message:new") == []

    # Bob comes back by opening it himself, history included.
    back, created = await open_direct(bob.id, [alice.id])
    assert not created and back.room.id == room.id
    assert {m.membership.user_id for m in back.members} == {alice.id, bob.id}
    assert world.notifier.events_for(bob.id, "room:member_added") == [
        {"room_id": room.id, "user_id": bob.id}
    ]


async def test_the_caller_who_left_gets_the_direct_room_back_on_opening(world: World) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    open_direct = OpenDirectRoom(world.storage, world.notifier, world.clock, world.ids)
    room = (await open_direct(alice.id, [bob.id]))[0].room
    await RemoveMember(world.storage, world.notifier, world.clock)(alice.id, room.id, alice.id)
    again, _ = await open_direct(alice.id, [bob.id])
    assert again.room.id == room.id
    assert {m.membership.user_id for m in again.members} == {alice.id, bob.id}


# --- typing -------------------------------------------------------------------------------


async def test_typing_reaches_the_other_members_only(world: World) -> None:
    alice, bob, carol = (
        await world.user("alice"),
        await world.user("bob"),
        await world.user("carol"),
    )
    mallory = await world.user("mallory")
    room = await world.room(alice, bob, carol)
    world.forget_events()
    relay = RelayTyping(world.storage, world.notifier)
    await relay(bob.id, room.id, True)
    await relay(bob.id, room.id, False)
    [started, stopped] = world.notifier.sent
    assert started.event == "typing" and set(started.user_ids) == {alice.id, carol.id}
    assert started.payload == {"room_id": room.id, "user_id": bob.id, "is_typing": True}
    assert stopped.payload["is_typing"] is False
    with pytest.raises(NotFound):
        await relay(mallory.id, room.id, True)
    assert len(world.notifier.sent) == 2
