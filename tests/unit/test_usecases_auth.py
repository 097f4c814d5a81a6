"""Login and registration against abuse: timing, lockout, admission, password rules."""

from __future__ import annotations

import asyncio

import pytest

from chat_adapters.admission import LocalAdmission
from chat_adapters.memory.rate_limit import InMemoryRateLimiter
from chat_adapters.memory.system import InsecureTestHasher
from chat_adapters.security.passwords import Argon2PasswordHasher
from chat_adapters.security.tokens import JwtTokenService
from chat_domain.errors import InvalidInput, RateLimited, Unauthorized
from chat_domain.ports.rate_limit import RateRule
from chat_domain.usecases.auth import LogIn, RegisterUser
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


# --- admission: a burst of registrations cannot starve logins ----------------------------


class HeldHasher(InsecureTestHasher):
    """Hashing waits until the test lets it go; verifying (logins) never waits."""

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.hashing = self.most_at_once = 0

    async def hash(self, password: str) -> str:
        self.hashing += 1
        self.most_at_once = max(self.most_at_once, self.hashing)
        try:
            await self.released.wait()
            return await super().hash(password)
        finally:
            self.hashing -= 1

    async def verify(self, password_hash: str, password: str) -> bool:
        return password_hash == await super().hash(password)  # not held


async def test_a_burst_of_registrations_queues_or_is_refused_while_logins_go_on(
    world: World, tokens: JwtTokenService
) -> None:
    await world.user("alice")
    hasher = HeldHasher()
    admission = LocalAdmission("registrations", concurrency=1, queue=3)
    register = RegisterUser(world.storage, hasher, world.clock, world.ids, admission)
    burst = [asyncio.create_task(register(f"burst{i}", PASSWORD, None)) for i in range(10)]
    async with asyncio.timeout(5):
        # The first to finish are the refused: 1 hashing + 3 waiting are held, 6 are not.
        finished = asyncio.as_completed(burst)
        for _ in range(6):
            with pytest.raises(RateLimited) as refused:
                await next(finished)
            assert refused.value.retry_after > 0
        assert (hasher.hashing, admission.inside) == (1, 4)
        # Meanwhile a login is not queued behind them.
        session = await LogIn(world.storage, hasher, tokens)("alice", PASSWORD)
        assert session.user.username == "alice"
        hasher.released.set()
        admitted = [await next(finished) for _ in range(4)]
    assert hasher.most_at_once == 1 and admission.inside == 0
    assert sorted(u.username for u in admitted) == [f"burst{i}" for i in range(4)]


async def test_admission_serves_its_queue_in_order_and_frees_a_failed_turn() -> None:
    admission = LocalAdmission("things", concurrency=1, queue=2)
    order: list[int] = []
    gate, first_inside = asyncio.Event(), asyncio.Event()

    async def work(n: int) -> None:
        async with admission.admit():
            first_inside.set()
            await gate.wait()
            order.append(n)
            if n == 0:
                raise ValueError("a failure inside the lane")

    tasks = [asyncio.create_task(work(n)) for n in range(3)]
    # Tasks start in creation order: once the first is inside, the other two have
    # queued behind it.
    await asyncio.wait_for(first_inside.wait(), 5)
    assert admission.inside == 3
    with pytest.raises(RateLimited, match="too many things"):
        async with admission.admit():
            pass
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert order == [0, 1, 2] and isinstance(results[0], ValueError)
    assert admission.inside == 0
    async with admission.admit():  # the lane is free again
        assert admission.inside == 1


# --- password rules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "password", "reason"),
    [
        ("carol", "password", "too common"),
        ("carol", "PassWord1", "too common"),
        ("carol", "12345678", "too common"),
        ("carol", "qwertyuiop", "too common"),
        ("carol.b", "carol.b", "8..128"),  # the length rule still comes first
        ("carolina", "carolina", "username"),
        ("carolina", "CAROLINA", "username"),
        ("carolina", "my carolina 99", "username"),
    ],
)
async def test_register_refuses_guessable_passwords(
    world: World, username: str, password: str, reason: str
) -> None:
    register = RegisterUser(world.storage, world.hasher, world.clock, world.ids)
    with pytest.raises(InvalidInput, match=reason) as refused:
        await register(username, password, None)
    assert refused.value.message.startswith("password: ")
    async with world.storage.reading() as uow:
        assert await uow.users.get_by_username(username) is None  # nothing was created


async def test_register_accepts_a_password_unlike_the_name_and_not_common(world: World) -> None:
    register = RegisterUser(world.storage, world.hasher, world.clock, world.ids)
    for username, password in (("carol", "car ol sings"), ("dave", PASSWORD)):
        assert (await register(username, password, None)).username == username
