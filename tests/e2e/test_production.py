"""Safe production defaults: no start without a real key, CORS for listed origins only,
secrets never logged, no stack trace in any answer, a strict CSP on the web client."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import socketio

from tests.support.clients import Api, Socket
from tests.support.processes import ChatProcess, chat_serve

KEY = "production-key-" + "k" * 40
ALLOWED = "https://chat.example.com"
EVIL = "https://evil.example.net"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatProcess]:
    """Production mode, with an origin allow-list and every log line (DEBUG) kept."""
    env = {
        "CHAT_ENV": "production",
        "CHAT_SECRET_KEY": KEY,
        "CHAT_CORS_ORIGINS": json.dumps([ALLOWED]),
        "CHAT_LOG_LEVEL": "DEBUG",
    }
    process = chat_serve(tmp_path_factory.mktemp("production"), env).start()
    yield process
    assert process.stop() == 0, process.log()


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatProcess]:
    """Development defaults: no origin configured."""
    process = chat_serve(tmp_path_factory.mktemp("dev"), name="dev").start()
    yield process
    assert process.stop() == 0, process.log()


@pytest.mark.parametrize(
    "env",
    [
        {"CHAT_ENV": "production"},
        {"CHAT_ENV": "production", "CHAT_SECRET_KEY": "short-key"},
    ],
    ids=["no key", "short key"],
)
def test_production_refuses_to_start_without_a_real_key(
    tmp_path: Path, env: dict[str, str]
) -> None:
    process = chat_serve(tmp_path, env).start(wait_ready=False)
    assert process.proc is not None
    code = process.proc.wait(timeout=60)
    assert code != 0
    log = process.log()
    assert "CHAT_SECRET_KEY" in log and "at least 32 characters" in log, log
    assert "Traceback" not in log  # a clear message, not a crash


async def test_rest_cors_answers_listed_origins_only(api: Api) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    ok = await api.http.options("/api/v1/rooms", headers={"Origin": ALLOWED, **preflight})
    assert ok.status_code == 200
    assert ok.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "POST" in ok.headers["Access-Control-Allow-Methods"]
    assert "authorization" in ok.headers["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Credentials" not in ok.headers  # tokens, not cookies

    for call in (
        api.http.options("/api/v1/rooms", headers={"Origin": EVIL, **preflight}),
        api.http.get("/api/v1/users/me", headers={"Origin": EVIL}),
        api.http.post(
            "/api/v1/auth/login",
            json={"username": "x_y_z", "password": "nope nope"},
            headers={"Origin": EVIL},
        ),
    ):
        r = await call
        assert "Access-Control-Allow-Origin" not in r.headers
        assert "Origin" in r.headers.get("Vary", "")
    # An error answer to a listed origin carries the header too, so the page can read it.
    r = await api.http.get("/api/v1/users/me", headers={"Origin": ALLOWED})
    assert r.status_code == 401 and r.headers["Access-Control-Allow-Origin"] == ALLOWED


async def connect_from(url: str, token: str, origin: str) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(
        url,
        auth={"token": token},
        headers={"Origin": origin},
        transports=["websocket"],
        wait_timeout=5,
    )
    return client


async def test_socket_cors_answers_listed_origins_only(api: Api) -> None:
    alice = await api.signup()
    allowed = await connect_from(api.base_url, alice.token, ALLOWED)
    assert allowed.connected
    await allowed.disconnect()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect_from(api.base_url, alice.token, EVIL)


async def test_development_sockets_are_same_origin_only(dev_server: ChatProcess) -> None:
    api = Api(dev_server.url)
    try:
        alice = await api.signup()
        # The server's own page (same origin) and non-browser clients (no Origin) connect ...
        same = await connect_from(dev_server.url, alice.token, dev_server.url)
        await same.disconnect()
        plain = await Socket(dev_server.url, alice.token).connect()
        await plain.disconnect()
        # ... a page from another site does not (engine.io's [] would have let any in).
        with pytest.raises(socketio.exceptions.ConnectionError):
            await connect_from(dev_server.url, alice.token, EVIL)
        r = await api.http.get("/api/v1/users/me", headers={"Origin": EVIL, **alice.headers})
        assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers
    finally:
        await api.close()


async def test_the_web_page_is_sent_with_a_strict_policy(api: Api) -> None:
    r = await api.http.get("/")
    assert r.status_code == 200
    assert r.headers["Content-Security-Policy"] == (
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        "style-src 'self'; script-src 'self'; frame-ancestors 'none'"
    )
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    api_answer = await api.http.get("/api/v1/nowhere")
    assert api_answer.headers["X-Content-Type-Options"] == "nosniff"


async def test_passwords_and_tokens_never_reach_the_log(api: Api, server: ChatProcess) -> None:
    password = f"Pw-{uuid.uuid4().hex}"
    username = f"logs_{uuid.uuid4().hex[:8]}"
    creds = {"username": username, "password": password}
    assert (await api.http.post("/api/v1/auth/register", json=creds)).status_code == 201
    login = await api.http.post("/api/v1/auth/login", json=creds)
    token = login.json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    wrong = await api.http.post("/api/v1/auth/login", json={**creds, "password": password + "x"})
    assert wrong.status_code == 401
    room = (await api.http.post("/api/v1/rooms", json={"name": "logs"}, headers=headers)).json()[
        "room"
    ]
    s = await Socket(api.base_url, token).connect()
    try:
        ack = await s.call("message:send", {"room_id": room["id"], "body": "hello log"})
        assert ack["ok"] is True
        await s.wait_for("message:new", lambda m: m["id"] == ack["message"]["id"])
        r = await api.http.post(
            f"/api/v1/rooms/{room['id']}/messages", json={"body": "rest"}, headers=headers
        )
        assert r.status_code == 202
        # A refused token is not logged either.
        assert (
            await api.http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}x"})
        ).status_code == 401
    finally:
        await s.disconnect()
    signature = token.rsplit(".", 1)[-1]
    log = server.log()
    assert "DEBUG" in log, "the server did not log at DEBUG: the test proves nothing"
    for secret in (password, token, signature, base64.b64encode(password.encode()).decode()):
        assert secret not in log


def test_a_bug_is_answered_without_its_trace() -> None:
    """The 500 handler: the contract's shape, the trace in the log only."""
    from quart import Quart

    from chat_server.errors import register_error_handlers

    app = Quart(__name__)
    register_error_handlers(app)

    @app.get("/boom")
    async def boom() -> str:
        raise RuntimeError("secret internals: db password=hunter2")

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/boom")

    r = asyncio.run(call())
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "internal_error", "message": "internal error"}}
    assert "hunter2" not in r.text and "Traceback" not in r.text
