"""The app vouches for its users (CHAT_AUTH_MODE=app): a real `chat serve` checks RS256 and
ES256 tokens against a key set the test serves on loopback, over REST and socket.io alike,
and follows the app when it rotates its keys mid-test."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import jwt
import pytest
import socketio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.support.clients import Socket
from tests.support.processes import ChatProcess, chat_serve

ISSUER, AUDIENCE = "https://app.test", "chat-e2e"


class AppKeys:
    """The app's signing keys and the key set it publishes at ``url`` (over HTTP, loopback)."""

    def __init__(self) -> None:
        self.private: dict[str, Any] = {}
        self.published: list[dict[str, Any]] = []
        self.fetches = 0
        keys = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                keys.fetches += 1
                body = json.dumps({"keys": list(keys.published)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add_rsa(self, kid: str, publish: bool = True) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private[kid] = key
        if publish:
            jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            self.published.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})

    def add_ec(self, kid: str) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        self.private[kid] = key
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        self.published.append({**jwk, "kid": kid, "use": "sig", "alg": "ES256"})

    def sign(self, kid: str, algorithm: str = "RS256", **changes: Any) -> str:
        return jwt.encode(
            claims(**changes), self.private[kid], algorithm=algorithm, headers={"kid": kid}
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"sub": "app-user-1", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hs256_with_public_key(keys: AppKeys, kid: str) -> str:
    """The algorithm-confusion forgery: HS256 keyed with the (public) RSA key's PEM."""
    pem = (
        keys.private[kid]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    signing_input = (
        f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': kid}).encode())}."
        f"{b64(json.dumps(claims()).encode())}"
    )
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


@pytest.fixture(scope="module")
def app_keys() -> Iterator[AppKeys]:
    keys = AppKeys()
    keys.add_rsa("rsa-1")
    keys.add_ec("ec-1")
    keys.add_rsa("impostor", publish=False)  # signs with a key the app never published
    yield keys
    keys.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, app_keys: AppKeys) -> Iterator[ChatProcess]:
    env = {
        "CHAT_AUTH_MODE": "app",
        "CHAT_APP_JWKS_URL": app_keys.url,
        "CHAT_APP_TOKEN_ISSUER": ISSUER,
        "CHAT_APP_TOKEN_AUDIENCE": AUDIENCE,
        # Every unknown kid may fetch the set again: the rotation below needs no waiting.
        "CHAT_APP_JWKS_MIN_REFRESH_SECONDS": "0",
    }
    process = chat_serve(tmp_path_factory.mktemp("app-tokens"), env).start()
    yield process
    assert process.stop() == 0, process.log()


def bad_tokens(keys: AppKeys) -> dict[str, str]:
    now = int(time.time())
    return {
        "wrong_issuer": keys.sign("rsa-1", iss="https://evil.test"),
        "wrong_audience": keys.sign("rsa-1", aud="another-service"),
        "expired": keys.sign("rsa-1", iat=now - 7200, exp=now - 3600),
        "bad_signature": jwt.encode(
            claims(), keys.private["impostor"], algorithm="RS256", headers={"kid": "rsa-1"}
        ),
        "unknown_kid": keys.sign("impostor"),
        "alg_none": jwt.encode(claims(), None, algorithm="none", headers={"kid": "rsa-1"}),
        "hs256_with_the_public_key": hs256_with_public_key(keys, "rsa-1"),
        "es256_header_on_an_rsa_key": jwt.encode(
            claims(), keys.private["ec-1"], algorithm="ES256", headers={"kid": "rsa-1"}
        ),
    }


async def refused_connect(url: str, token: str) -> Any:
    client = socketio.AsyncClient(reconnection=False)
    errors: asyncio.Queue[Any] = asyncio.Queue()
    client.on("connect_error", errors.put_nowait)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=5)
    await client.disconnect()
    return await asyncio.wait_for(errors.get(), 5)


def me(server: ChatProcess, token: str) -> httpx.Response:
    return httpx.get(
        f"{server.url}/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=15
    )


@pytest.mark.parametrize(
    "case",
    [
        "wrong_issuer",
        "wrong_audience",
        "expired",
        "bad_signature",
        "unknown_kid",
        "alg_none",
        "hs256_with_the_public_key",
        "es256_header_on_an_rsa_key",
    ],
)
async def test_a_bad_app_token_is_refused_over_rest_and_socket(
    server: ChatProcess, app_keys: AppKeys, case: str
) -> None:
    token = bad_tokens(app_keys)[case]
    r = me(server, token)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", r.text
    assert await refused_connect(server.url, token) == {"message": "unauthorized"}


async def test_a_valid_app_token_makes_the_user_and_works_everywhere(
    server: ChatProcess, app_keys: AppKeys
) -> None:
    sub = f"ann-{uuid.uuid4().hex[:6]}"
    rsa_token = app_keys.sign("rsa-1", sub=sub, name="Ann From The App")
    r = me(server, rsa_token)
    assert r.status_code == 200, r.text
    user = r.json()["user"]
    assert user["username"] == sub and user["display_name"] == "Ann From The App"
    # The same sub under the other key type: the same user, not a second one.
    ec_token = app_keys.sign("ec-1", "ES256", sub=sub)
    assert me(server, ec_token).json()["user"]["id"] == user["id"]
    # A room of their own, and their message back over the socket: the token works there too.
    async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
        headers = {"Authorization": f"Bearer {rsa_token}"}
        room = (await http.post("/api/v1/rooms", json={"name": "app"}, headers=headers)).json()
        socket = await Socket(server.url, ec_token).connect()
        try:
            sent = await http.post(
                f"/api/v1/rooms/{room['room']['id']}/messages",
                json={"body": "hello from the app"},
                headers=headers,
            )
            assert sent.status_code == 202, sent.text
            got = await socket.wait_for("message:new", lambda m: m["sender_id"] == user["id"])
            assert got[0]["body"] == "hello from the app"
        finally:
            await socket.disconnect()


async def test_accounts_are_off_in_app_mode(server: ChatProcess) -> None:
    creds = {"username": "local_user", "password": "correct horse battery"}
    async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
        for path in ("/api/v1/auth/register", "/api/v1/auth/login"):
            r = await http.post(path, json=creds)
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text


async def test_keys_rotated_mid_test_are_followed(server: ChatProcess, app_keys: AppKeys) -> None:
    assert me(server, app_keys.sign("rsa-1")).status_code == 200
    # The app publishes a new key and signs with it at once: the server fetches the set again.
    app_keys.add_rsa("rsa-2")
    fetched_before = app_keys.fetches
    r = me(server, app_keys.sign("rsa-2", sub="rotated-user"))
    assert r.status_code == 200, r.text
    assert app_keys.fetches == fetched_before + 1
    # A key the app never published stays refused, fetch or no fetch.
    assert me(server, app_keys.sign("impostor")).status_code == 401
