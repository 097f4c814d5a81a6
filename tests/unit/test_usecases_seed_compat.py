"""The seed's rooms, clients and tokens mapped onto ours (docs/seed-compat.md)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from chat_adapters.memory.system import FixedClock, InsecureTestHasher
from chat_adapters.security.seed_tokens import JwtSeedTokenService
from chat_adapters.security.tokens import JwtTokenService
from chat_domain.entities import USERNAME_RE, RoomKind
from chat_domain.errors import Conflict, InvalidInput, Unauthorized
from chat_domain.usecases.auth import LogIn
from chat_domain.usecases.messages import MESSAGE_NEW, SendMessage, StoreMessages
from chat_domain.usecases.seed_compat import (
    SEED_ROOMJOIN,
    SEED_ROOMLEAVE,
    IssueSeedToken,
    JoinSeedRoom,
    ListSeedClients,
    NameSeedSenders,
    OpenSeedSession,
    SeedDirectory,
    SeedRoomPresence,
    SendSeedMessage,
    seed_username,
)
from tests.unit.conftest import World

KEY = "unit-test-signing-key-of-32-bytes!!"


@pytest.fixture
def seed_tokens() -> JwtSeedTokenService:
    return JwtSeedTokenService(KEY, FixedClock(datetime.now(UTC)))


@pytest.fixture
def directory(world: World) -> SeedDirectory:
    return SeedDirectory(world.ids)


def issue(world: World, tokens: JwtSeedTokenService, directory: SeedDirectory) -> IssueSeedToken:
    return IssueSeedToken(world.storage, tokens, world.clock, directory)


def opener(world: World, tokens: JwtSeedTokenService, directory: SeedDirectory) -> OpenSeedSession:
    return OpenSeedSession(world.storage, tokens, directory)


async def test_a_token_makes_the_room_the_client_and_its_membership_on_first_use(
    world: World, seed_tokens: JwtSeedTokenService, directory: SeedDirectory
) -> None:
    token = await issue(world, seed_tokens, directory)("lobby", "Client-1")
    grant = await opener(world, seed_tokens, directory)(token)
    assert (grant.seed_room_id, grant.client_id) == ("lobby", "Client-1")
    async with world.storage.reading() as uow:
        room = await uow.rooms.get(grant.room_id)
        user = await uow.users.get(grant.user_id)
        members = await uow.rooms.members(grant.room_id)
    assert room is not None and room.kind is RoomKind.GROUP and room.name == "lobby"
    assert user is not None and user.display_name == "seed:Client-1"
    assert USERNAME_RE.fullmatch(user.username) and user.username.startswith("s.client-1.")
    owner = [m for m in members if m.membership.is_owner]
    assert [m.username for m in owner] == ["seed-system"]
    # The same ids map to the same room and user: a second token adds nothing.
    await issue(world, seed_tokens, directory)("lobby", "Client-1")
    async with world.storage.reading() as uow:
        assert len(await uow.rooms.members(grant.room_id)) == 2


async def test_usernames_of_client_ids_differing_in_case_stay_apart() -> None:
    assert seed_username("Bob") != seed_username("bob")
    assert USERNAME_RE.fullmatch(seed_username("a" * 56))
    assert USERNAME_RE.fullmatch(seed_username("x:y.Z-_"))


@pytest.mark.parametrize("bad", ["", "a b", "ä", "x" * 57, "a/b"])
async def test_ids_outside_the_id_alphabet_are_refused_and_change_nothing(
    world: World, seed_tokens: JwtSeedTokenService, directory: SeedDirectory, bad: str
) -> None:
    with pytest.raises(InvalidInput):
        await issue(world, seed_tokens, directory)(bad, "client")
    with pytest.raises(InvalidInput):
        await issue(world, seed_tokens, directory)("room", bad)
    async with world.storage.reading() as uow:
        assert await uow.users.search("s", 10) == []


async def test_a_seed_user_cannot_log_in(
    world: World, seed_tokens: JwtSeedTokenService, directory: SeedDirectory
) -> None:
    await issue(world, seed_tokens, directory)("lobby", "c1")
    log_in = LogIn(world.storage, InsecureTestHasher(), JwtTokenService(KEY, world.clock))
    with pytest.raises(Unauthorized):
        await log_in(seed_username("c1"), "")


async def test_a_username_of_ours_in_the_way_is_a_conflict(
    world: World, seed_tokens: JwtSeedTokenService, directory: SeedDirectory
) -> None:
    await world.user(seed_username("c1"))
    with pytest.raises(Conflict):
        await issue(world, seed_tokens, directory)("lobby", "c1")


async def test_a_seed_send_takes_our_send_path_and_reaches_our_members(
    world: World, seed_tokens: JwtSeedTokenService, directory: SeedDirectory
) -> None:
    token = await issue(world, seed_tokens, directory)("lobby", "c1")
    alice = await world.user("alice")
    room = await JoinSeedRoom(world.storage, world.clock, directory)(alice.id, "lobby")
    send = SendSeedMessage(
        opener(world, seed_tokens, directory),
        SendMessage(world.storage, world.broker, world.clock, world.ids),
    )
    accepted = await send(token, "hello from the seed")
    assert world.broker.published == [accepted.message]
    [stored] = await StoreMessages(world.storage, world.notifier)([accepted.message])
    assert stored.seq == 1 and stored.room_id == room.id
    [event] = world.notifier.events_for(alice.id, MESSAGE_NEW)
    assert event["body"] == "hello from the seed"
    names = NameSeedSenders(world.storage, directory)
    assert await names(stored.sender_id) == "c1"
    assert await names(alice.id) == "alice"


@pytest.mark.parametrize("token", ["", "nonsense", None, 7])
async def test_a_bad_token_is_an_invalid_session(
    world: World, seed_tokens: JwtSeedTokenService, directory: SeedDirectory, token: object
) -> None:
    with pytest.raises(Unauthorized, match="invalid session token"):
        await opener(world, seed_tokens, directory)(token)


async def test_an_access_token_is_no_seed_token_nor_the_reverse(
    world: World, seed_tokens: JwtSeedTokenService, directory: SeedDirectory
) -> None:
    access = JwtTokenService(KEY, FixedClock(datetime.now(UTC)))
    alice = await world.user("alice")
    with pytest.raises(Unauthorized):
        await opener(world, seed_tokens, directory)(access.issue(alice.id).token)
    seed = await issue(world, seed_tokens, directory)("lobby", "c1")
    with pytest.raises(Unauthorized):
        access.read(seed)


async def test_leaving_ends_the_membership_and_tells_the_seed_members(
    world: World, seed_tokens: JwtSeedTokenService, directory: SeedDirectory
) -> None:
    t1 = await issue(world, seed_tokens, directory)("lobby", "c1")
    await issue(world, seed_tokens, directory)("lobby", "c2")
    alice = await world.user("alice")
    await JoinSeedRoom(world.storage, world.clock, directory)(alice.id, "lobby")
    grant = await opener(world, seed_tokens, directory)(t1)
    presence = SeedRoomPresence(world.storage, world.notifier, directory)
    await presence.joined(grant)
    [joined] = [n for n in world.notifier.sent if n.event == SEED_ROOMJOIN]
    # Only the seed clients hear it: our users (and the system owner) know no such event.
    assert set(joined.user_ids) == {directory.user_id("c1"), directory.user_id("c2")}
    assert joined.payload["client_id"] == "c1" and joined.payload["seed_room_id"] == "lobby"
    await presence.left(grant)
    assert [n.event for n in world.notifier.sent][-1] == SEED_ROOMLEAVE
    assert await ListSeedClients(world.storage, directory)("lobby") == ["c2"]
    with pytest.raises(Unauthorized):
        await opener(world, seed_tokens, directory)(t1)
    # A new token brings the client back.
    await issue(world, seed_tokens, directory)("lobby", "c1")
    assert await ListSeedClients(world.storage, directory)("lobby") == ["c1", "c2"]


async def test_one_of_ours_named_like_a_seed_client_is_not_one(
    world: World, directory: SeedDirectory
) -> None:
    mallory = await world.user("mallory")
    assert directory.client_id_of(replace(mallory, display_name="seed:c1")) is None
