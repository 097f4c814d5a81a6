"""The raw-ASGI send lane answers exactly as the Quart route does, case by case.

In-process, on the server's real app and an embedded container (SQLite, in-memory broker
and limiter): each request is sent once as is, which the lane answers, and once with a
foreign Origin header, which sends it to Quart. Status, JSON and headers must match, and
the test checks which of the two answered each time.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chat_bootstrap.container import Container, build_container
from chat_bootstrap.runtime import running
from chat_bootstrap.settings import Settings
from chat_server.app import create_quart_app
from chat_server.fast_send import FastSendRoute

PASSWORD = "correct horse battery"
SEND_BURST = 40  # the send budget of the test's user; the last case spends it
# What differs from one request to the next by nature.
VOLATILE_HEADERS = {"x-request-id", "date", "content-length"}  # the bodies are compared
VOLATILE_FIELDS = {"id", "created_at", "client_msg_id"}


class CountingApp:
    """The Quart app, counting the requests that reach it."""

    def __init__(self, app: Any) -> None:
        self.app, self.calls = app, 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await self.app(scope, receive, send)


@pytest.fixture
async def served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, CountingApp, Container]]:
    # A server sets its JSON codec class-wide: undo it for this process's other clients.
    import engineio.packet
    import socketio.packet

    monkeypatch.setattr(engineio.packet.Packet, "json", engineio.packet.Packet.json)
    monkeypatch.setattr(socketio.packet.Packet, "json", socketio.packet.Packet.json)
    monkeypatch.chdir(tmp_path)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/chat.db",
        rate_send_per_second=0.001,
        rate_send_burst=SEND_BURST,
    )
    container = build_container(settings, role="server")
    async with running(container):
        quart = CountingApp(create_quart_app(container))
        app = FastSendRoute(quart, container)  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://chat.test") as client:
            yield client, quart, container


async def user(client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    name = f"u{uuid.uuid4().hex[:10]}"
    created = await client.post(
        "/api/v1/auth/register", json={"username": name, "password": PASSWORD}
    )
    assert created.status_code == 201
    login = await client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    return created.json()["user"]["id"], {"Authorization": f"Bearer {login.json()['access_token']}"}


def comparable(response: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    body = response.json()
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(message, dict):
        body["message"] = {k: v for k, v in message.items() if k not in VOLATILE_FIELDS}
    error = body.get("error") if isinstance(body, dict) else None
    for detail in (error or {}).get("details") or []:
        if "retry_after" in detail:  # counts down between the two requests
            detail["retry_after"] = "<seconds>"
    headers = {k: v for k, v in response.headers.items() if k not in VOLATILE_HEADERS}
    return response.status_code, body, headers


async def both_ways(
    client: httpx.AsyncClient,
    quart: CountingApp,
    path: str,
    content: bytes,
    headers: dict[str, str],
) -> tuple[tuple[int, Any, dict[str, str]], tuple[int, Any, dict[str, str]]]:
    before = quart.calls
    lane = await client.post(path, content=content, headers=headers)
    assert quart.calls == before, f"the lane should have answered {path} {content!r}"
    via_quart = await client.post(
        path, content=content, headers={**headers, "Origin": "http://elsewhere.example"}
    )
    assert quart.calls == before + 1, "a request with Origin goes to Quart"
    return comparable(lane), comparable(via_quart)


async def test_every_kind_of_send_is_answered_alike_by_the_lane_and_by_quart(
    served: tuple[httpx.AsyncClient, CountingApp, Container],
) -> None:
    client, quart, container = served
    _, alice = await user(client)
    _, stranger = await user(client)
    room = await client.post("/api/v1/rooms", json={"name": "r", "member_ids": []}, headers=alice)
    path = f"/api/v1/rooms/{room.json()['room']['id']}/messages"
    too_long = "x" * (container.settings().max_body_bytes // 2)
    long_key = b'{"body": "hi", "client_msg_id": "%s"}' % (b"k" * 65)

    cases: list[tuple[str, str, bytes, dict[str, str], int]] = [
        ("a send", path, b'{"body": "hi", "client_msg_id": "k1"}', alice, 202),
        ("without client_msg_id", path, b'{"body": "hi"}', alice, 202),
        ("unknown fields ignored", path, b'{"body": "hi", "x": 1}', alice, 202),
        ("body not a string", path, b'{"body": 5}', alice, 422),
        ("a list", path, b"[1]", alice, 422),
        ("no body field", path, b"{}", alice, 422),
        ("blank body", path, b'{"body": "   "}', alice, 422),
        ("body too long", path, f'{{"body": "{too_long}"}}'.encode(), alice, 422),
        ("client_msg_id too long", path, long_key, alice, 422),
        ("malformed JSON", path, b'{"body": ', alice, 400),
        ("empty body", path, b"", alice, 400),
        ("not UTF-8", path, b'{"body": "\xff"}', alice, 400),
        ("garbage token", path, b'{"body": "hi"}', {"Authorization": "Bearer nope"}, 401),
        ("not a member", path, b'{"body": "hi"}', stranger, 404),
        ("no such room", "/api/v1/rooms/nope/messages", b'{"body": "hi"}', alice, 404),
        ("NUL in the body", path, b'{"body": "x\\u0000y"}', alice, 422),
        ("bidi override in the body", path, b'{"body": "a\\u202eb"}', alice, 422),
        ("lone surrogate in the body", path, b'{"body": "\\ud800"}', alice, 400),
        ("NUL in client_msg_id", path, b'{"body": "hi", "client_msg_id": "\\u0000"}', alice, 422),
        ("NUL in the room id", "/api/v1/rooms/a%00b/messages", b'{"body": "hi"}', alice, 404),
    ]  # fmt: skip
    for name, case_path, content, headers, status in cases:
        lane, via_quart = await both_ways(client, quart, case_path, content, headers)
        assert lane == via_quart, name
        assert lane[0] == status, (name, lane)

    # Over the send budget: 429 with Retry-After, both ways.
    while (await client.post(path, json={"body": "spend"}, headers=alice)).status_code == 202:
        pass
    lane, via_quart = await both_ways(client, quart, path, b'{"body": "hi"}', alice)
    assert lane == via_quart
    assert lane[0] == 429 and "retry-after" in lane[2]


async def test_what_is_not_a_plain_send_goes_to_quart(
    served: tuple[httpx.AsyncClient, CountingApp, Container],
) -> None:
    client, quart, _ = served
    _, alice = await user(client)
    room = await client.post("/api/v1/rooms", json={"name": "r", "member_ids": []}, headers=alice)
    path = f"/api/v1/rooms/{room.json()['room']['id']}/messages"
    for method, url, headers in [
        ("POST", path, {}),  # no token: Quart's 401
        ("POST", path, {"Authorization": "Basic eDp5"}),
        ("GET", path, alice),  # history
        ("POST", path + "/x", alice),
        ("POST", path, {**alice, "Origin": "http://chat.test"}),
    ]:
        before = quart.calls
        await client.request(method, url, headers=headers, content=b'{"body": "hi"}')
        assert quart.calls == before + 1, (method, url, headers)
