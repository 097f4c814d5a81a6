"""The app vouches for its users: app tokens checked claim by claim, users made on first
sight from ``sub``, and the key set of the app fetched again (sparingly) on rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt import PyJWKSet
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from chat_adapters.memory.system import FixedClock
from chat_adapters.security.app_tokens import (
    KEY_SET_ALGORITHMS,
    SECRET_ALGORITHMS,
    JwtAppTokenVerifier,
    KeySet,
    SharedSecret,
    key_set_from_file,
)
from chat_adapters.security.tokens import JwtTokenService
from chat_domain.errors import Unauthorized, Unavailable
from chat_domain.usecases.app_users import AuthenticateWithApp, ProvisionAppUser, app_user_id
from chat_domain.usecases.auth import Authenticate
from tests.unit.conftest import World

SECRET = "the-app-and-the-chat-share-this-secret!"
ISSUER, AUDIENCE = "https://app.example", "chat"


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"sub": "u-1", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def hs256(**changes: Any) -> str:
    return jwt.encode(claims(**changes), SECRET, algorithm="HS256")


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def secret_verifier(leeway: float = 30, clock: FixedClock | None = None) -> JwtAppTokenVerifier:
    return JwtAppTokenVerifier(
        SharedSecret(SECRET),
        SECRET_ALGORITHMS,
        ISSUER,
        AUDIENCE,
        clock or FixedClock(datetime.now(UTC)),
        leeway_seconds=leeway,
    )


def authenticate(
    world: World, tokens: JwtTokenService | None, app: bool = True
) -> Authenticate | AuthenticateWithApp:
    """As the container builds it: ours only, the app's only, or both."""
    accounts = Authenticate(world.storage, tokens) if tokens is not None else None
    if not app:
        assert accounts is not None
        return accounts
    provision = ProvisionAppUser(world.storage, world.clock)
    return AuthenticateWithApp(
        world.storage, secret_verifier(), provision, world.clock, accounts=accounts
    )


# --- users on first sight -------------------------------------------------------------------


async def test_a_valid_app_token_makes_its_user_once(world: World) -> None:
    auth = authenticate(world, None)
    user = await auth(hs256(sub="Ann.Lee@Example.com", name="  Ann   Lee "))
    assert user.id == app_user_id("Ann.Lee@Example.com")
    assert user.username == "ann.lee_example.com"
    assert user.display_name == "Ann Lee"  # through the display-name rules
    # Another node (a fresh cache) finds the same user: nothing is made twice.
    again = await authenticate(world, None)(hs256(sub="Ann.Lee@Example.com", name="Other"))
    assert again == user
    async with world.storage.reading() as uow:
        assert len(await uow.users.search("ann", 10)) == 1


async def test_the_user_id_is_readable_when_sub_is_id_shaped_and_hashed_otherwise() -> None:
    assert app_user_id("user_42") == "app:user_42"
    hashed = app_user_id("auth0|42")
    assert hashed.startswith("apph:") and len(hashed) == 5 + 64
    assert app_user_id("x" * 61).startswith("apph:")


async def test_a_sub_never_takes_over_an_account_whose_username_it_spells(world: World) -> None:
    alice = await world.user("alice")
    app_alice = await authenticate(world, None)(hs256(sub="alice"))
    assert app_alice.id != alice.id
    assert app_alice.username.startswith("alice-") and len(app_alice.username) == 12


async def test_a_short_sub_is_padded_to_a_valid_username(world: World) -> None:
    user = await authenticate(world, None)(hs256(sub="x"))
    assert user.username == "x__"


@pytest.mark.parametrize(
    "name", ["evil\u202eeman", "\u200b", "x" * 65, 42], ids=["bidi", "invisible", "long", "int"]
)
async def test_a_name_claim_that_breaks_the_rules_falls_back_to_the_username(
    world: World, name: object
) -> None:
    user = await authenticate(world, None)(hs256(sub="bob", name=name))
    assert user.display_name == "bob"


async def test_a_name_claim_posing_as_another_username_falls_back(world: World) -> None:
    await world.user("carol")
    user = await authenticate(world, None)(hs256(sub="mallory", name="CAROL"))
    assert user.display_name == "mallory"


async def test_a_sub_with_a_control_character_is_refused(world: World) -> None:
    with pytest.raises(Unauthorized):
        await authenticate(world, None)(hs256(sub="bad\x00sub"))


async def test_an_app_user_cannot_log_in_with_a_password(world: World) -> None:
    from chat_domain.usecases.auth import LogIn

    user = await authenticate(world, None)(hs256(sub="dave"))
    with pytest.raises(Unauthorized):
        await LogIn(world.storage, world.hasher, JwtTokenService(SECRET, world.clock))(
            user.username, ""
        )


# --- modes ------------------------------------------------------------------------------------


async def test_accounts_mode_refuses_app_tokens(world: World, tokens: JwtTokenService) -> None:
    with pytest.raises(Unauthorized):
        await authenticate(world, tokens, app=False)(hs256())


async def test_app_mode_refuses_our_own_tokens(world: World, tokens: JwtTokenService) -> None:
    ann = await world.user("ann")
    with pytest.raises(Unauthorized):
        await authenticate(world, None)(tokens.issue(ann.id).token)


async def test_both_modes_accept_either_token(world: World, tokens: JwtTokenService) -> None:
    ann = await world.user("ann")
    auth = authenticate(world, tokens)
    assert (await auth(tokens.issue(ann.id).token)).id == ann.id
    assert (await auth(hs256(sub="zed"))).id == app_user_id("zed")


# --- each claim -------------------------------------------------------------------------------

BAD_SECRET_TOKENS = {
    "wrong_issuer": lambda: hs256(iss="https://evil.example"),
    "no_issuer": lambda: hs256(iss=None),
    "wrong_audience": lambda: hs256(aud="another-service"),
    "no_audience": lambda: hs256(aud=None),
    "expired": lambda: hs256(exp=int(time.time()) - 120),
    "no_expiry": lambda: hs256(exp=None),
    "no_sub": lambda: hs256(sub=None),
    "bad_signature": lambda: jwt.encode(claims(), SECRET + "x", algorithm="HS256"),
    "alg_none": lambda: jwt.encode(claims(), None, algorithm="none"),
    "other_hmac": lambda: jwt.encode(claims(), SECRET * 2, algorithm="HS512"),
    "malformed": lambda: "not.a.jwt",
}


@pytest.mark.parametrize("case", BAD_SECRET_TOKENS)
async def test_each_bad_claim_is_refused(case: str) -> None:
    with pytest.raises(Unauthorized):
        await secret_verifier().verify(BAD_SECRET_TOKENS[case]())


async def test_clock_skew_within_the_leeway_is_accepted() -> None:
    token = hs256(exp=int(time.time()) - 10)
    assert (await secret_verifier(leeway=30).verify(token)).subject == "u-1"
    with pytest.raises(Unauthorized):
        await secret_verifier(leeway=0).verify(token)


def test_none_cannot_be_configured() -> None:
    with pytest.raises(ValueError):
        JwtAppTokenVerifier(SharedSecret(SECRET), ["none"], ISSUER, AUDIENCE, FixedClock())


# --- key sets -------------------------------------------------------------------------------


class AppKeys:
    """The app's key pairs and the key set it publishes (which a test may rotate)."""

    def __init__(self) -> None:
        self.private: dict[str, Any] = {}
        self.published: list[dict[str, Any]] = []

    def add_rsa(self, kid: str) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private[kid] = key
        self.published.append(
            {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig"}
        )

    def add_ec(self, kid: str) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        self.private[kid] = key
        self.published.append(
            {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig"}
        )

    def key_set(self) -> PyJWKSet:
        return PyJWKSet.from_json(json.dumps({"keys": self.published}))

    def sign(self, kid: str, algorithm: str = "RS256", **changes: Any) -> str:
        return jwt.encode(
            claims(**changes), self.private[kid], algorithm=algorithm, headers={"kid": kid}
        )

    def public_pem(self, kid: str) -> bytes:
        key: Any = self.private[kid].public_key()
        return bytes(
            key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


@pytest.fixture
def app_keys() -> AppKeys:
    keys = AppKeys()
    keys.add_rsa("rsa-1")
    keys.add_ec("ec-1")
    return keys


def key_set_verifier(
    keys: KeySet, clock: FixedClock | None = None, remember_seconds: float | None = None
) -> JwtAppTokenVerifier:
    return JwtAppTokenVerifier(
        keys,
        KEY_SET_ALGORITHMS,
        ISSUER,
        AUDIENCE,
        clock or FixedClock(datetime.now(UTC)),
        remember_seconds=remember_seconds,
    )


async def test_rs256_and_es256_tokens_verify_against_the_key_set(app_keys: AppKeys) -> None:
    verifier = key_set_verifier(KeySet(app_keys.key_set, FixedClock(datetime.now(UTC))))
    assert (await verifier.verify(app_keys.sign("rsa-1", sub="r"))).subject == "r"
    assert (await verifier.verify(app_keys.sign("ec-1", "ES256", sub="e"))).subject == "e"


async def test_algorithm_confusion_is_refused(app_keys: AppKeys) -> None:
    verifier = key_set_verifier(KeySet(app_keys.key_set, FixedClock(datetime.now(UTC))))
    # HS256 "signed" with the public key, which an attacker knows: not an accepted algorithm.
    signing_input = (
        f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': 'rsa-1'}).encode())}."
        f"{b64(json.dumps(claims()).encode())}"
    )
    mac = hmac.new(app_keys.public_pem("rsa-1"), signing_input.encode(), hashlib.sha256)
    forged = f"{signing_input}.{b64(mac.digest())}"
    with pytest.raises(Unauthorized):
        await verifier.verify(forged)
    # An ES256 header naming the RSA key: the key is not for that algorithm.
    ec_signed = jwt.encode(
        claims(), app_keys.private["ec-1"], algorithm="ES256", headers={"kid": "rsa-1"}
    )
    with pytest.raises(Unauthorized):
        await verifier.verify(ec_signed)
    with pytest.raises(Unauthorized):
        await verifier.verify(jwt.encode(claims(), None, algorithm="none"))


async def test_an_unknown_kid_reloads_the_key_set_at_most_once_per_interval(
    app_keys: AppKeys,
) -> None:
    clock = FixedClock(datetime.now(UTC))
    keys = KeySet(app_keys.key_set, clock, cache_seconds=300, min_refresh_seconds=30)
    verifier = key_set_verifier(keys, clock, remember_seconds=300)
    await verifier.verify(app_keys.sign("rsa-1"))
    assert keys.loads == 1
    clock.advance(31)
    for _ in range(5):  # made-up kids: the first reloads the set, the others wait
        with pytest.raises(Unauthorized):
            await verifier.verify(
                jwt.encode(claims(), app_keys.private["rsa-1"], "RS256", headers={"kid": "nope"})
            )
    assert keys.loads == 2  # five made-up kids within the interval: one fetch
    # The app rotates: its new key is used before the interval is over: refused until then.
    app_keys.add_rsa("rsa-2")
    with pytest.raises(Unauthorized):
        await verifier.verify(app_keys.sign("rsa-2"))
    clock.advance(31)
    assert (await verifier.verify(app_keys.sign("rsa-2", sub="new"))).subject == "new"
    assert keys.loads == 3
    # Old key dropped by the app: still cached until the set is stale, then gone.
    app_keys.published = [k for k in app_keys.published if k["kid"] != "rsa-1"]
    await verifier.verify(app_keys.sign("rsa-1"))
    clock.advance(300)
    with pytest.raises(Unauthorized):
        await verifier.verify(app_keys.sign("rsa-1"))


async def test_a_key_set_that_cannot_be_loaded_is_unavailable_and_old_keys_stay(
    app_keys: AppKeys,
) -> None:
    clock = FixedClock(datetime.now(UTC))
    failing = {"now": True}

    def load() -> PyJWKSet:
        if failing["now"]:
            raise OSError("connection refused")
        return app_keys.key_set()

    keys = KeySet(load, clock, cache_seconds=60, min_refresh_seconds=10)
    verifier = key_set_verifier(keys, clock, remember_seconds=60)
    with pytest.raises(Unavailable):
        await verifier.verify(app_keys.sign("rsa-1"))
    failing["now"] = False
    clock.advance(10)
    await verifier.verify(app_keys.sign("rsa-1"))
    failing["now"] = True
    clock.advance(61)  # stale, and the app's key server is down: the keys in hand still serve
    assert (await verifier.verify(app_keys.sign("rsa-1", sub="kept"))).subject == "kept"


async def test_a_key_set_file_is_read_again_when_the_app_rotates(
    app_keys: AppKeys, tmp_path: Path
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": app_keys.published}))
    clock = FixedClock(datetime.now(UTC))
    verifier = key_set_verifier(
        KeySet(key_set_from_file(path), clock, min_refresh_seconds=0), clock
    )
    assert (await verifier.verify(app_keys.sign("rsa-1", sub="a"))).subject == "a"
    app_keys.add_rsa("rsa-2")
    with pytest.raises(Unauthorized):  # signed before the file was replaced: unknown kid
        await verifier.verify(app_keys.sign("rsa-2"))
    path.write_text(json.dumps({"keys": app_keys.published}))
    assert (await verifier.verify(app_keys.sign("rsa-2", sub="b"))).subject == "b"


# --- verified tokens remembered -----------------------------------------------------------


async def test_a_remembered_token_still_expires_at_its_exp() -> None:
    clock = FixedClock(datetime.now(UTC))
    verifier = secret_verifier(leeway=5, clock=clock)
    token = hs256(exp=int(clock.now().timestamp()) + 60)
    assert (await verifier.verify(token)).subject == "u-1"
    clock.advance(64)
    assert (await verifier.verify(token)).subject == "u-1"  # remembered, within the leeway
    clock.advance(2)
    with pytest.raises(Unauthorized):
        await verifier.verify(token)


async def test_a_remembered_token_is_checked_again_after_remember_seconds(
    app_keys: AppKeys,
) -> None:
    clock = FixedClock(datetime.now(UTC))
    keys = KeySet(app_keys.key_set, clock, cache_seconds=100, min_refresh_seconds=0)
    verifier = key_set_verifier(keys, clock, remember_seconds=100)
    token = app_keys.sign("rsa-1")
    await verifier.verify(token)
    app_keys.published = [k for k in app_keys.published if k["kid"] != "rsa-1"]  # withdrawn
    clock.advance(99)
    await verifier.verify(token)
    clock.advance(1)
    with pytest.raises(Unauthorized):
        await verifier.verify(token)
