"""Login and registration against abuse: timing, lockout, admission, password rules."""

from __future__ import annotations

import pytest

from chat_adapters.memory.rate_limit import InMemoryRateLimiter
from chat_adapters.memory.system import InsecureTestHasher
from chat_adapters.security.passwords import Argon2PasswordHasher
from chat_adapters.security.tokens import JwtTokenService
from chat_domain.errors import RateLimited, Unauthorized
from chat_domain.ports.rate_limit import RateRule
from chat_domain.usecases.auth import LogIn
from tests.unit.conftest import PASSWORD, World


class CountingHasher(InsecureTestHasher):
    """The test hasher, counting verifications and remembering which hash each was against."""

    def __init__(self) -> None:
        self.verified: list[str] = []

    async def verify(self, password_hash: str, password: str) -> bool:
        self.verified.append(password_hash)
        return await super().verify(password_hash, password)


# --- timing: an unknown username costs what a wrong password costs ----------------------


async def test_an_unknown_username_is_verified_once_like_a_known_one(
    world: World, tokens: JwtTokenService
) -> None:
    alice = await world.user("alice")
    hasher = CountingHasher()
    log_in = LogIn(world.storage, hasher, tokens)
    with pytest.raises(Unauthorized):
        await log_in("alice", "not the password")
    assert hasher.verified == [alice.password_hash]
    hasher.verified.clear()
    with pytest.raises(Unauthorized):
        await log_in("nobody", PASSWORD)
    # The same work: one verification, against the decoy since there is no user's hash.
    assert hasher.verified == [hasher.decoy_hash]
    hasher.verified.clear()
    with pytest.raises(Unauthorized):  # whatever the password, the decoy lets nobody in
        await log_in("nobody", "")
    assert hasher.verified == [hasher.decoy_hash]


async def test_the_argon2_decoy_has_the_parameters_of_real_hashes() -> None:
    hasher = Argon2PasswordHasher()
    real = await hasher.hash(PASSWORD)
    decoy = hasher.decoy_hash
    # "$argon2id$v=19$m=19456,t=2,p=1$salt$hash": the same algorithm and costs.
    assert decoy.split("$")[:4] == real.split("$")[:4] and decoy != real
    assert hasher.decoy_hash == decoy  # made once
    assert not await hasher.verify(decoy, PASSWORD) and not await hasher.verify(decoy, "")


# --- lockout: per username and client, cleared by a success -----------------------------

ATTEMPTS = RateRule("login", per_second=0.001, burst=3)


async def test_guesses_from_one_address_do_not_lock_the_owner_out(
    world: World, tokens: JwtTokenService
) -> None:
    await world.user("alice")
    log_in = LogIn(world.storage, world.hasher, tokens, InMemoryRateLimiter(), ATTEMPTS)
    for _ in range(3):
        with pytest.raises(Unauthorized):
            await log_in("alice", "a guess", client="10.0.0.66")
    with pytest.raises(RateLimited):  # the guesser's address is out of attempts
        await log_in("ALICE", PASSWORD, client="10.0.0.66")
    session = await log_in("alice", PASSWORD, client="10.0.0.1")  # the owner, elsewhere
    assert session.user.username == "alice"


async def test_a_successful_login_clears_the_failures_counted(
    world: World, tokens: JwtTokenService
) -> None:
    await world.user("alice")
    log_in = LogIn(world.storage, world.hasher, tokens, InMemoryRateLimiter(), ATTEMPTS)
    for _ in range(2):
        with pytest.raises(Unauthorized):
            await log_in("alice", "a typo", client="10.0.0.1")
    await log_in("alice", PASSWORD, client="10.0.0.1")
    for _ in range(3):  # a full budget again, not the one attempt that was left
        with pytest.raises(Unauthorized):
            await log_in("alice", "a typo", client="10.0.0.1")
    with pytest.raises(RateLimited):
        await log_in("alice", PASSWORD, client="10.0.0.1")
