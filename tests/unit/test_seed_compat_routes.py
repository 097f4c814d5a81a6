"""The seed's routes exist only when CHAT_SEED_COMPAT is on, and in ``api-key`` mode a
token is issued only to a caller with the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from dependency_injector import providers
from pydantic import ValidationError
from quart import Quart

from chat_bootstrap.container import build_container
from chat_bootstrap.settings import Settings
from chat_server.app import create_quart_app

KEY = "a-shared-seed-key-0123456789"


def app_with(tmp_path: Path, **settings: object) -> Quart:
    config = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/chat.db",
        secret_key="x" * 48,  # type: ignore[arg-type]
        **settings,  # type: ignore[arg-type]
    )
    container = build_container(config, role="server")

    async def issue(seed_room_id: str, client_id: str) -> str:  # the use case, faked
        return f"token-for-{client_id}-in-{seed_room_id}"

    container.issue_seed_token.override(providers.Object(issue))
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
    for headers in ({}, {"X-Api-Key": "wrong"}, {"X-Api-Key": KEY + "x"}):
        r = await client.post(
            "/chat-rooms/lobby/chat-token", json={"clientId": "c1"}, headers=headers
        )
        assert r.status_code == 401
        assert (await r.get_json())["error"]["code"] == "unauthorized"
        r = await client.get("/chat-rooms/lobby/clients", headers=headers)
        assert r.status_code == 401
    r = await client.post(
        "/chat-rooms/lobby/chat-token", json={"clientId": "c1"}, headers={"X-Api-Key": KEY}
    )
    assert (r.status_code, await r.get_json()) == (200, {"token": "token-for-c1-in-lobby"})


@pytest.mark.parametrize("key", [None, "short"])
def test_api_key_mode_needs_a_key_of_16_characters(key: str | None) -> None:
    with pytest.raises(ValidationError, match="CHAT_SEED_TOKEN_KEY"):
        Settings(seed_compat="api-key", seed_token_key=key)  # type: ignore[arg-type]
