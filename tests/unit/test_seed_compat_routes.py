"""The seed's routes exist only when CHAT_SEED_COMPAT is on, and in ``api-key`` mode a
token is issued only to a caller with a key: the shared secret, or a server API key."""

from __future__ import annotations

from pathlib import Path

import pytest
from dependency_injector import providers
from pydantic import ValidationError
from quart import Quart

from chat_bootstrap.container import build_container
from chat_bootstrap.settings import Settings
from chat_domain.entities import Scope
from chat_domain.errors import Forbidden, Unauthorized
from chat_server.app import create_quart_app

KEY = "a-shared-seed-key-0123456789"
SERVER_KEY = "chk_a-server-api-key-with-users-write"


def app_with(tmp_path: Path, **settings: object) -> Quart:
    config = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/chat.db",
        secret_key="x" * 48,  # type: ignore[arg-type]
        **settings,  # type: ignore[arg-type]
    )
    container = build_container(config, role="server")

    async def issue(seed_room_id: str, client_id: str) -> str:  # the use case, faked
        return f"token-for-{client_id}-in-{seed_room_id}"

    async def authenticate_api_key(key: str | None, scope: Scope) -> None:  # faked too
        if key != SERVER_KEY:
            raise Unauthorized("missing or invalid API key")
        if scope is not Scope.USERS_WRITE:
            raise Forbidden(f"this API key lacks the scope {scope.value}")

    container.issue_seed_token.override(providers.Object(issue))
    container.authenticate_api_key.override(providers.Object(authenticate_api_key))
    return create_quart_app(container)


async def test_the_seed_routes_do_not_exist_by_default(tmp_path: Path) -> None:
    client = app_with(tmp_path).test_client()
    r = await client.post("/chat-rooms/lobby/chat-token", json={"clientId": "c1"})
    assert r.status_code == 404
    r = await client.post("/chat-messages", json={"content": "x", "token": "t"})
    assert r.status_code == 404


async def test_open_mode_issues_a_token_to_anyone(tmp_path: Path) -> None:
    client = app_with(tmp_path, seed_compat="open").test_client()
    r = await client.post("/chat-rooms/lobby/chat-token", json={"clientId": "c1"})
    assert (r.status_code, await r.get_json()) == (200, {"token": "token-for-c1-in-lobby"})


async def test_api_key_mode_issues_a_token_only_with_the_key(tmp_path: Path) -> None:
    client = app_with(tmp_path, seed_compat="api-key", seed_token_key=KEY).test_client()
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY + "x"}):
        r = await client.post(
            "/chat-rooms/lobby/chat-token", json={"clientId": "c1"}, headers=headers
        )
        assert r.status_code == 401
        assert (await r.get_json())["error"]["code"] == "unauthorized"
        r = await client.get("/chat-rooms/lobby/clients", headers=headers)
        assert r.status_code == 401
    # The shared secret, or a server API key with users:write.
    for key in (KEY, SERVER_KEY):
        r = await client.post(
            "/chat-rooms/lobby/chat-token", json={"clientId": "c1"}, headers={"X-API-Key": key}
        )
        assert (r.status_code, await r.get_json()) == (200, {"token": "token-for-c1-in-lobby"})
    # Listing a room's clients needs messages:read, which that server key lacks.
    r = await client.get("/chat-rooms/lobby/clients", headers={"X-API-Key": SERVER_KEY})
    assert r.status_code == 403


async def test_api_key_mode_without_a_shared_secret_takes_server_api_keys_only(
    tmp_path: Path,
) -> None:
    client = app_with(tmp_path, seed_compat="api-key").test_client()
    r = await client.post("/chat-rooms/lobby/chat-token", json={"clientId": "c1"})
    assert r.status_code == 401
    r = await client.post(
        "/chat-rooms/lobby/chat-token", json={"clientId": "c1"}, headers={"X-API-Key": SERVER_KEY}
    )
    assert r.status_code == 200


def test_a_shared_secret_has_16_characters_or_more() -> None:
    with pytest.raises(ValidationError, match="CHAT_SEED_TOKEN_KEY"):
        Settings(seed_compat="api-key", seed_token_key="short")  # type: ignore[arg-type]
