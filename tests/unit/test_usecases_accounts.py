"""An operator's account changes: deactivation, reactivation, password reset, and the
sessions they end, on in-memory adapters."""

from __future__ import annotations

import asyncio

import jwt
import pytest

from chat_adapters.memory.system import FixedClock
from chat_adapters.security.tokens import JwtTokenService
from chat_domain.entities import User
from chat_domain.errors import InvalidInput, NotFound, Unauthorized
from chat_domain.usecases.accounts import (
    DeactivateUser,
    FindEndedSessions,
    ReactivateUser,
    ResetPassword,
)
from chat_domain.usecases.auth import Authenticate, LogIn
from chat_server.session_watch import SessionWatch
from tests.unit.conftest import PASSWORD, World

RECHECK_S = 30.0
NEW_PASSWORD = "a quite different phrase"
KEY = "unit-test-signing-key-of-32-bytes!!"


def node(world: World, tokens: JwtTokenService) -> Authenticate:
    """A server node's token check, trusting what it read for RECHECK_S by the world's clock."""
    return Authenticate(world.storage, tokens, recheck_seconds=RECHECK_S, clock=world.clock)


async def log_in(world: World, tokens: JwtTokenService, password: str = PASSWORD) -> str:
    return (await LogIn(world.storage, world.hasher, tokens)("alice", password)).token.token


async def refused(authenticate: Authenticate, token: str) -> bool:
    try:
        await authenticate(token)
    except Unauthorized:
        return True
    return False


async def test_a_deactivated_user_cannot_log_in_and_their_tokens_end_on_every_node(
    world: World, tokens: JwtTokenService
) -> None:
    alice = await world.user("alice")
    token = await log_in(world, tokens)
    seen_before = node(world, tokens)
    assert await seen_before(token) == alice  # this node now trusts alice for RECHECK_S

    deactivated = await DeactivateUser(world.storage, world.clock)(" Alice ")

    assert deactivated.deactivated_at == world.clock.now()
    with pytest.raises(Unauthorized) as deactivated_login:
        await log_in(world, tokens)
    with pytest.raises(Unauthorized) as wrong_password:
        await log_in(world, tokens, "not the password")
    assert deactivated_login.value.message == wrong_password.value.message
    assert await refused(node(world, tokens), token)  # a node that had not read alice
    # A node that read alice before trusts what it read for at most RECHECK_S.
    world.clock.advance(RECHECK_S)
    assert await refused(seen_before, token)
    # Deactivating again changes nothing.
    assert await DeactivateUser(world.storage, world.clock)("alice") == deactivated


async def test_reactivation_lets_the_user_log_in_anew_but_not_with_old_tokens(
    world: World, tokens: JwtTokenService
) -> None:
    alice = await world.user("alice")
    old_token = await log_in(world, tokens)
    await DeactivateUser(world.storage, world.clock)("alice")
    assert await ReactivateUser(world.storage)("alice") != alice

    authenticate = node(world, tokens)
    new_token = await log_in(world, tokens)
    assert (await authenticate(new_token)).id == alice.id
    assert await refused(authenticate, old_token)
    unchanged = await ReactivateUser(world.storage)("alice")  # active already
    assert unchanged.deactivated_at is None and await authenticate(new_token) == unchanged


async def test_a_password_reset_ends_old_password_and_old_tokens(
    world: World, tokens: JwtTokenService
) -> None:
    alice = await world.user("alice")
    old_token = await log_in(world, tokens)
    seen_before = node(world, tokens)
    assert await seen_before(old_token) == alice

    reset = await ResetPassword(world.storage, world.hasher)("alice", NEW_PASSWORD)

    assert await world.hasher.verify(reset.password_hash, NEW_PASSWORD)
    with pytest.raises(Unauthorized):
        await log_in(world, tokens)
    new_token = await log_in(world, tokens, NEW_PASSWORD)
    # A token newer than what the node read is read again at once, not refused.
    assert await seen_before(new_token) == reset
    assert await refused(seen_before, old_token)
    assert await refused(node(world, tokens), old_token)


async def test_a_reset_keeps_the_rules_of_registration_and_the_status(
    world: World, tokens: JwtTokenService
) -> None:
    alice = await world.user("alice")
    reset_password = ResetPassword(world.storage, world.hasher)
    for weak in ("short", "alice-in-wonderland", "password123"):
        with pytest.raises(InvalidInput):
            await reset_password("alice", weak)
    async with world.storage.reading() as uow:
        assert await uow.users.get(alice.id) == alice  # nothing changed

    await DeactivateUser(world.storage, world.clock)("alice")
    reset = await reset_password("alice", NEW_PASSWORD)
    assert reset.deactivated_at is not None
    with pytest.raises(Unauthorized):
        await log_in(world, tokens, NEW_PASSWORD)


async def test_an_unknown_user_is_not_found(world: World) -> None:
    for change in (
        DeactivateUser(world.storage, world.clock)("nobody"),
        ReactivateUser(world.storage)("nobody"),
        ResetPassword(world.storage, world.hasher)("nobody", NEW_PASSWORD),
        DeactivateUser(world.storage, world.clock)("not a name!"),
    ):
        with pytest.raises(NotFound):
            await change


async def test_a_token_of_before_generations_counts_as_the_first() -> None:
    tokens = JwtTokenService(KEY, FixedClock())
    now = int(FixedClock().now().timestamp())
    legacy = jwt.encode({"sub": "alice-id", "iat": now, "exp": now + 60}, KEY, "HS256")
    assert tokens.read(legacy).session_generation == 0
    assert tokens.read(tokens.issue("alice-id", 3).token).session_generation == 3
    forged = jwt.encode({"sub": "a", "exp": now + 60, "gen": "1"}, KEY, "HS256")
    with pytest.raises(Unauthorized):
        tokens.read(forged)


async def users(world: World, *names: str) -> list[User]:
    return [await world.user(name) for name in names]


async def test_ended_sessions_are_found_in_batches(world: World) -> None:
    alice, bob, carol = await users(world, "alice", "bob", "carol")
    await DeactivateUser(world.storage, world.clock)("bob")
    await ResetPassword(world.storage, world.hasher)("carol", NEW_PASSWORD)

    ended = await FindEndedSessions(world.storage, batch=2)(
        {
            "s1": (alice.id, 0),
            "s2": (bob.id, 0),
            "s3": (carol.id, 0),
            "s4": (carol.id, 1),  # connected after the reset
            "s5": ("no-such-user", 0),
        }
    )

    assert sorted(ended) == ["s2", "s3", "s5"]


async def test_the_watch_disconnects_ended_sessions_on_its_timer(world: World) -> None:
    alice, bob = await users(world, "alice", "bob")
    gone: asyncio.Queue[str] = asyncio.Queue()

    async def disconnect(sid: str) -> None:
        watch.closed(sid)  # as the namespace's disconnect handler does
        await gone.put(sid)

    watch = SessionWatch(FindEndedSessions(world.storage), disconnect, interval=0.01)
    watch.opened("s-alice", alice)
    watch.opened("s-bob", bob)
    assert await watch.recheck() == []

    await DeactivateUser(world.storage, world.clock)("bob")

    assert await asyncio.wait_for(gone.get(), 5.0) == "s-bob"
    await ResetPassword(world.storage, world.hasher)("alice", NEW_PASSWORD)
    assert await asyncio.wait_for(gone.get(), 5.0) == "s-alice"
    assert await watch.recheck() == []  # nobody left to check
