"""The server API's use cases on in-memory adapters: API keys (scopes, revocation, a rate
per key) and what the app's backend does with rooms and messages."""

from __future__ import annotations

import pytest

from chat_adapters.memory.rate_limit import InMemoryRateLimiter
from chat_domain.entities import MessageStatus, Role, Scope
from chat_domain.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthorized,
)
from chat_domain.ports.rate_limit import RateRule
from chat_domain.ports.security import AppIdentity
from chat_domain.usecases.api_keys import (
    AuthenticateApiKey,
    CreateApiKey,
    ListApiKeys,
    RevokeApiKey,
    key_hash,
)
from chat_domain.usecases.app_users import ProvisionAppUser
from chat_domain.usecases.messages import SendMessage, StoreMessages
from chat_domain.usecases.rooms import MEMBER_ADDED, MEMBER_REMOVED, CreateGroupRoom, OpenDirectRoom
from chat_domain.usecases.server_api import (
    SYSTEM_USER_ID,
    CreateServerRoom,
    PostServerMessage,
    ReadRoomHistory,
    SetRoomMembers,
)
from tests.unit.conftest import World

# --- API keys -------------------------------------------------------------------------------


async def test_a_key_is_shown_once_and_kept_only_as_a_hash(world: World) -> None:
    key, secret = await CreateApiKey(world.storage, world.clock, world.ids)(
        "backend", ["rooms:write", "messages:read"]
    )
    assert secret.startswith("chk_") and len(secret) > 40
    assert key.key_hash == key_hash(secret) and secret not in repr(key)
    assert key.scopes == {Scope.ROOMS_WRITE, Scope.MESSAGES_READ}
    assert await ListApiKeys(world.storage)() == [key]
    assert await AuthenticateApiKey(world.storage)(secret, Scope.ROOMS_WRITE) == key


async def test_a_key_without_the_scope_is_forbidden(world: World) -> None:
    _, secret = await CreateApiKey(world.storage, world.clock, world.ids)("k", ["messages:read"])
    with pytest.raises(Forbidden):
        await AuthenticateApiKey(world.storage)(secret, Scope.MESSAGES_WRITE)


@pytest.mark.parametrize("scopes", [[], ["rooms:admin"], ["ROOMS:WRITE"]])
async def test_a_key_needs_known_scopes(world: World, scopes: list[str]) -> None:
    with pytest.raises(InvalidInput):
        await CreateApiKey(world.storage, world.clock, world.ids)("k", scopes)
    assert await ListApiKeys(world.storage)() == []


@pytest.mark.parametrize("presented", [None, "", "chk_unknown", "x" * 10_000])
async def test_an_unknown_key_is_unauthorized(world: World, presented: str | None) -> None:
    await CreateApiKey(world.storage, world.clock, world.ids)("k", ["rooms:write"])
    with pytest.raises(Unauthorized):
        await AuthenticateApiKey(world.storage)(presented, Scope.ROOMS_WRITE)


async def test_a_revoked_key_is_refused_at_once(world: World) -> None:
    key, secret = await CreateApiKey(world.storage, world.clock, world.ids)("k", ["rooms:write"])
    check = AuthenticateApiKey(world.storage)  # one instance, as a server keeps it
    await check(secret, Scope.ROOMS_WRITE)
    revoked = await RevokeApiKey(world.storage, world.clock)(key.id)
    assert revoked.revoked_at == world.clock.now()
    with pytest.raises(Unauthorized):
        await check(secret, Scope.ROOMS_WRITE)
    with pytest.raises(NotFound):
        await RevokeApiKey(world.storage, world.clock)("no-such-key")


async def test_each_key_has_its_own_rate(world: World) -> None:
    create = CreateApiKey(world.storage, world.clock, world.ids)
    (_, first), (_, second) = await create("a", ["rooms:write"]), await create("b", ["rooms:write"])
    check = AuthenticateApiKey(
        world.storage, InMemoryRateLimiter(), RateRule("server-api", per_second=0.001, burst=2)
    )
    await check(first, Scope.ROOMS_WRITE)
    await check(first, Scope.ROOMS_WRITE)
    with pytest.raises(RateLimited):
        await check(first, Scope.ROOMS_WRITE)
    await check(second, Scope.ROOMS_WRITE)  # the other key's budget is untouched


# --- users, rooms and members ------------------------------------------------------------


async def test_upserting_a_user_makes_it_once_and_refuses_a_bad_name(world: World) -> None:
    provision = ProvisionAppUser(world.storage, world.clock)
    user, created = await provision(AppIdentity("u1", "Ann"), strict=True)
    again, created_again = await provision(AppIdentity("u1", "Other"), strict=True)
    assert created and not created_again and again == user
    with pytest.raises(InvalidInput):
        await provision(AppIdentity("u2", "bad\u202ename"), strict=True)
    async with world.storage.reading() as uow:
        assert await uow.users.search("u2", 5) == []


async def test_the_app_creates_a_room_for_an_owner_it_names(world: World) -> None:
    ann, bob = await world.user("ann"), await world.user("bob")
    create = CreateServerRoom(
        world.storage, CreateGroupRoom(world.storage, world.notifier, world.clock, world.ids)
    )
    details = await create(ann.id, "team", [bob.id])
    roles = {m.membership.user_id: m.membership.role for m in details.members}
    assert roles == {ann.id: Role.OWNER, bob.id: Role.MEMBER}
    with pytest.raises(InvalidInput):
        await create("nobody", "team", [bob.id])


async def test_setting_members_adds_and_removes_and_tells_them(world: World) -> None:
    ann, bob, cat, dan = [await world.user(n) for n in ("ann", "bob", "cat", "dan")]
    room = await world.room(ann, bob, cat)
    world.forget_events()
    details = await SetRoomMembers(world.storage, world.notifier, world.clock)(
        room.id, [ann.id, cat.id, dan.id]
    )
    assert {m.membership.user_id for m in details.members} == {ann.id, cat.id, dan.id}
    assert world.notifier.events_for(dan.id, MEMBER_ADDED) == [
        {"room_id": room.id, "user_id": dan.id}
    ]
    assert world.notifier.events_for(bob.id, MEMBER_REMOVED) == [
        {"room_id": room.id, "user_id": bob.id}
    ]
    assert world.notifier.events_for(bob.id, MEMBER_ADDED) == []  # gone before dan came
    assert world.notifier.events_for(ann.id, MEMBER_ADDED) == [
        {"room_id": room.id, "user_id": dan.id}
    ]


async def test_setting_members_keeps_the_owner_and_refuses_unknown_users(world: World) -> None:
    ann, bob = await world.user("ann"), await world.user("bob")
    room = await world.room(ann, bob)
    set_members = SetRoomMembers(world.storage, world.notifier, world.clock)
    with pytest.raises(InvalidInput):
        await set_members(room.id, [bob.id])
    with pytest.raises(InvalidInput):
        await set_members(room.id, [ann.id, "ghost"])
    with pytest.raises(NotFound):
        await set_members("no-such-room", [ann.id])
    async with world.storage.reading() as uow:
        assert set(await uow.rooms.member_ids(room.id)) == {ann.id, bob.id}
    direct, _ = await OpenDirectRoom(world.storage, world.notifier, world.clock, world.ids)(
        ann.id, [bob.id]
    )
    with pytest.raises(Forbidden):
        await set_members(direct.room.id, [ann.id])


# --- messages -------------------------------------------------------------------------------


def poster(world: World) -> PostServerMessage:
    send = SendMessage(world.storage, world.broker, world.clock, world.ids)
    return PostServerMessage(world.storage, world.broker, world.clock, world.ids, send)


async def test_the_system_posts_into_any_room_idempotently(world: World) -> None:
    ann = await world.user("ann")
    room = await world.room(ann)
    post = poster(world)
    first = await post(room.id, "maintenance at noon", "notice-1", None)
    retry = await post(room.id, "maintenance at noon", "notice-1", None)
    assert first.status is MessageStatus.ACCEPTED and first.message.sender_id == SYSTEM_USER_ID
    assert retry.message.id == first.message.id
    stored = await StoreMessages(world.storage, world.notifier)(world.broker.published)
    assert {m.seq for m in stored} == {1}  # published twice, stored once
    after = await post(room.id, "maintenance at noon", "notice-1", None)
    assert after.status is MessageStatus.STORED and after.message.seq == 1
    async with world.storage.reading() as uow:
        assert (await uow.users.get(SYSTEM_USER_ID)) is not None


async def test_the_system_user_gets_a_free_username(world: World) -> None:
    await world.user("system")  # a person took the name first
    ann = await world.user("ann")
    room = await world.room(ann)
    await poster(world)(room.id, "hello", None, None)
    async with world.storage.reading() as uow:
        system = await uow.users.get(SYSTEM_USER_ID)
    assert system is not None and system.username == "system-messages"


async def test_posting_as_a_user_is_their_own_send(world: World) -> None:
    ann, bob = await world.user("ann"), await world.user("bob")
    room = await world.room(ann)
    sent = await poster(world)(room.id, "hi", None, ann.id)
    assert sent.message.sender_id == ann.id
    with pytest.raises(NotFound):  # not a member
        await poster(world)(room.id, "hi", None, bob.id)
    with pytest.raises(NotFound):
        await poster(world)("no-such-room", "hi", None, None)
    with pytest.raises(InvalidInput):  # never reaches storage (PostgreSQL refuses NUL)
        await poster(world)(room.id, "hi", None, "x\x00y")


async def test_history_reads_any_room_without_being_a_member(world: World) -> None:
    ann = await world.user("ann")
    room = await world.room(ann)
    for body in ("one", "two", "three"):
        await world.message(ann, room, body)
    messages, has_more = await ReadRoomHistory(world.storage)(room.id, limit=2)
    assert [m.body for m in messages] == ["two", "three"] and has_more
    with pytest.raises(NotFound):
        await ReadRoomHistory(world.storage)("no-such-room")
