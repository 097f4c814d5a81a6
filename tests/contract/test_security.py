"""Contract of the security ports: one set of asserts, run on every adapter.

Password hashers: argon2id (production) and the fast, insecure hasher the unit tests run
on; a use case must not be able to tell them apart. Token services: signed JWTs (the one
adapter), refused in every way a forged, altered or expired token can come.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime

import jwt
import pytest

from chat_adapters.memory.system import FixedClock, InsecureTestHasher
from chat_adapters.security.passwords import Argon2PasswordHasher
from chat_adapters.security.tokens import JwtTokenService
from chat_domain.errors import Unauthorized
from chat_domain.ports.security import PasswordHasher, TokenService
from chat_domain.ports.system import Clock

PASSWORD = "correct horse battery"
KEY = "contract-test-signing-key-" + "k" * 38  # 64 bytes: long enough for HS512 too
TTL = 60

HASHERS: dict[str, Callable[[], PasswordHasher]] = {
    "argon2": Argon2PasswordHasher,
    "insecure-test": InsecureTestHasher,
}
TOKEN_SERVICES: dict[str, Callable[[Clock], TokenService]] = {
    "jwt": lambda clock: JwtTokenService(KEY, clock, ttl_seconds=TTL),
}


@pytest.fixture(params=list(HASHERS))
def hasher(request: pytest.FixtureRequest) -> PasswordHasher:
    return HASHERS[request.param]()


@pytest.fixture
def clock() -> FixedClock:
    # Real "now": a token is also checked against the wall clock by whoever decodes it.
    return FixedClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture(params=list(TOKEN_SERVICES))
def make_tokens(request: pytest.FixtureRequest) -> Callable[[Clock], TokenService]:
    return TOKEN_SERVICES[request.param]


@pytest.fixture
def tokens(make_tokens: Callable[[Clock], TokenService], clock: FixedClock) -> TokenService:
    return make_tokens(clock)


# --- password hashers ---------------------------------------------------------------------


@pytest.mark.parametrize("password", [PASSWORD, "", "pässwörd ✓ 密码", "x" * 1000])
async def test_a_password_verifies_against_its_hash_and_no_other_does(
    hasher: PasswordHasher, password: str
) -> None:
    hashed = await hasher.hash(password)
    assert password not in hashed or not password  # the password is not in its hash
    assert await hasher.verify(hashed, password)
    for other in (password + " ", password.upper() + "X", "wrong", PASSWORD[:-1]):
        assert not await hasher.verify(hashed, other)


async def test_a_hash_is_text_a_user_row_can_hold(hasher: PasswordHasher) -> None:
    hashed = await hasher.hash("x" * 1000)
    assert hashed.isprintable() and 0 < len(hashed) <= 255  # users.password_hash


async def test_the_decoy_lets_no_password_in(hasher: PasswordHasher) -> None:
    decoy = hasher.decoy_hash
    assert decoy == hasher.decoy_hash  # made once, the same at every login
    for password in (PASSWORD, "", "decoy", decoy):
        assert not await hasher.verify(decoy, password)


async def test_the_decoy_is_not_the_hash_of_any_password_tried(hasher: PasswordHasher) -> None:
    hashes = {await hasher.hash(p) for p in (PASSWORD, "", "decoy")}
    assert hasher.decoy_hash not in hashes


@pytest.mark.parametrize("stored", ["", "not a hash", "$argon2id$v=19$m=1,t=1,p=1$$", "\x00"])
async def test_a_malformed_stored_hash_verifies_nothing_and_raises_nothing(
    hasher: PasswordHasher, stored: str
) -> None:
    assert not await hasher.verify(stored, PASSWORD)
    assert not await hasher.verify(stored, "")


async def test_a_hash_from_another_hasher_instance_still_verifies(
    request: pytest.FixtureRequest, hasher: PasswordHasher
) -> None:
    """Every server node builds its own hasher: a hash made on one verifies on another."""
    other = HASHERS[request.node.callspec.params["hasher"]]()
    assert await other.verify(await hasher.hash(PASSWORD), PASSWORD)
    assert other.decoy_hash != (await hasher.hash(PASSWORD))


# --- token services -----------------------------------------------------------------------


def test_an_issued_token_verifies_to_its_user_until_it_expires(
    tokens: TokenService, clock: FixedClock
) -> None:
    issued = tokens.issue("alice-id")
    assert issued.expires_in == TTL
    assert tokens.verify(issued.token) == "alice-id"
    clock.advance(TTL - 1)
    assert tokens.verify(issued.token) == "alice-id"
    clock.advance(1)
    with pytest.raises(Unauthorized):
        tokens.verify(issued.token)
    with pytest.raises(Unauthorized):  # and stays refused
        tokens.verify(issued.token)


def test_a_token_never_seen_before_is_refused_once_expired(
    make_tokens: Callable[[Clock], TokenService], clock: FixedClock
) -> None:
    token = make_tokens(clock).issue("alice-id").token
    clock.advance(TTL)
    with pytest.raises(Unauthorized):
        make_tokens(clock).verify(token)  # a fresh service: nothing remembered


def test_a_token_verifies_on_another_node(
    make_tokens: Callable[[Clock], TokenService], clock: FixedClock
) -> None:
    assert make_tokens(clock).verify(make_tokens(clock).issue("bob-id").token) == "bob-id"


def test_tokens_of_different_users_differ(tokens: TokenService) -> None:
    assert tokens.issue("alice-id").token != tokens.issue("bob-id").token


def _segment(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, object]:
    claims: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return claims


def test_forged_and_altered_tokens_are_refused(tokens: TokenService, clock: FixedClock) -> None:
    token = tokens.issue("alice-id").token
    header, payload, signature = token.split(".")
    claims = _claims(token)
    mallory = _segment({**claims, "sub": "mallory-id"})
    forged = {
        "empty": "",
        "garbage": "garbage",
        "two segments": f"{header}.{payload}",
        "altered signature": f"{header}.{payload}.{signature[:-2]}xx",
        "another user's claims": f"{header}.{mallory}.{signature}",
        # The "none" algorithm: no signature at all, which a careless verifier accepts.
        "alg none": f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "alg none, signed": f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{payload}.{signature}",
        "another key": JwtTokenService("another-key-another-key-another-key", clock)
        .issue("alice-id")
        .token,
        "another algorithm": jwt.encode(claims, KEY, algorithm="HS512"),
        "no expiry": jwt.encode({"sub": "alice-id"}, KEY, algorithm="HS256"),
        "no subject": jwt.encode({"exp": claims["exp"]}, KEY, algorithm="HS256"),
        "subject not text": jwt.encode({**claims, "sub": 42}, KEY, algorithm="HS256"),
    }
    for case, forgery in forged.items():
        with pytest.raises(Unauthorized):
            tokens.verify(forgery)
            pytest.fail(f"accepted: {case}")
    assert tokens.verify(token) == "alice-id"  # the genuine one still passes
