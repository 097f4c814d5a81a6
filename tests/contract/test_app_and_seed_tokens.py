"""Contract of the token ports beside our own access tokens: the app's tokens (the app
vouches for its users) and the seed's session tokens. One set of asserts per port, run on
every adapter (each has one today: PyJWT). The app verifier's claim checks in depth, key
sets and rotation are in tests/unit/test_usecases_app_auth.py and tests/e2e/test_app_tokens.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import jwt
import pytest

from chat_adapters.memory.system import FixedClock
from chat_adapters.security.app_tokens import JwtAppTokenVerifier, SharedSecret
from chat_adapters.security.seed_tokens import JwtSeedTokenService
from chat_adapters.security.tokens import JwtTokenService
from chat_domain.errors import Unauthorized
from chat_domain.ports.security import AppTokenVerifier, SeedTokenService
from chat_domain.ports.system import Clock

SECRET = "contract-test-app-secret-" + "s" * 40
ISSUER, AUDIENCE = "https://app.example", "chat"
NOW = datetime(2026, 12, 6, tzinfo=UTC)

APP_VERIFIERS: dict[str, Callable[[Clock], AppTokenVerifier]] = {
    "jwt-hs256": lambda clock: JwtAppTokenVerifier(
        SharedSecret(SECRET), ["HS256"], ISSUER, AUDIENCE, clock, leeway_seconds=5
    ),
}
SEED_SERVICES: dict[str, Callable[[Clock], SeedTokenService]] = {
    "jwt": lambda clock: JwtSeedTokenService(SECRET, clock, ttl_seconds=60),
}


def app_token(**claims: object) -> str:
    now = int(NOW.timestamp())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-42", "iat": now, "exp": now + 60}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, SECRET, "HS256")


@pytest.fixture(params=list(APP_VERIFIERS))
def app_verifier(request: pytest.FixtureRequest) -> tuple[AppTokenVerifier, FixedClock]:
    clock = FixedClock(NOW)
    return APP_VERIFIERS[request.param](clock), clock


@pytest.fixture(params=list(SEED_SERVICES))
def seed_tokens(request: pytest.FixtureRequest) -> tuple[SeedTokenService, FixedClock]:
    clock = FixedClock(NOW)
    return SEED_SERVICES[request.param](clock), clock


async def test_an_app_token_names_its_subject_and_display_name(
    app_verifier: tuple[AppTokenVerifier, FixedClock],
) -> None:
    verifier, _ = app_verifier
    identity = await verifier.verify(app_token(name="Ada"))
    assert (identity.subject, identity.display_name) == ("user-42", "Ada")
    assert (await verifier.verify(app_token())).display_name is None


@pytest.mark.parametrize(
    "claims",
    [{"iss": "https://other.example"}, {"aud": "another"}, {"sub": None}, {"exp": None}],
    ids=["issuer", "audience", "no-sub", "no-exp"],
)
async def test_an_app_token_with_a_wrong_claim_is_refused(
    app_verifier: tuple[AppTokenVerifier, FixedClock], claims: dict[str, object]
) -> None:
    verifier, _ = app_verifier
    with pytest.raises(Unauthorized):
        await verifier.verify(app_token(**claims))


async def test_an_app_token_expires_by_the_verifiers_clock_after_the_leeway(
    app_verifier: tuple[AppTokenVerifier, FixedClock],
) -> None:
    verifier, clock = app_verifier
    token = app_token()
    await verifier.verify(token)
    clock.advance(60 + 5 + 1)
    with pytest.raises(Unauthorized):
        await verifier.verify(token)


async def test_forged_and_unsigned_app_tokens_are_refused(
    app_verifier: tuple[AppTokenVerifier, FixedClock],
) -> None:
    verifier, _ = app_verifier
    body = jwt.decode(app_token(), options={"verify_signature": False})
    for forged in (
        jwt.encode(body, "another-secret-" + "x" * 40, "HS256"),
        jwt.encode(body, None, "none"),  # type: ignore[arg-type]
        "not a token",
    ):
        with pytest.raises(Unauthorized):
            await verifier.verify(forged)


def test_a_seed_token_names_its_room_and_client_until_it_expires(
    seed_tokens: tuple[SeedTokenService, FixedClock],
) -> None:
    service, clock = seed_tokens
    token = service.issue("lobby", "client-7")
    assert service.read(token) == ("lobby", "client-7")
    clock.advance(61)
    with pytest.raises(Unauthorized):
        service.read(token)


def test_a_seed_token_and_an_access_token_never_stand_in_for_each_other(
    seed_tokens: tuple[SeedTokenService, FixedClock],
) -> None:
    service, clock = seed_tokens
    access = JwtTokenService(SECRET, clock, ttl_seconds=60)
    with pytest.raises(Unauthorized):
        service.read(access.issue("user-1").token)
    with pytest.raises(Unauthorized):
        access.verify(service.issue("lobby", "client-7"))
    with pytest.raises(Unauthorized):
        service.read("not a token")
