"""The quick start of docs/app-integration.md, run as written against a real `chat serve`
in `both` mode with a shared HS256 secret: the app's backend makes users and a room with
an API key, the token it mints works on REST and socket.io, and our own accounts still
log in beside it."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.clients import Socket
from tests.support.processes import CHAT, ChatProcess, chat_serve, clean_env

ROOT = Path(__file__).resolve().parents[2]
SECRET = "quick-start-shared-secret-0123456789abcdef"
ENV = {
    "CHAT_AUTH_MODE": "both",
    "CHAT_APP_TOKEN_SECRET": SECRET,
    "CHAT_APP_TOKEN_ISSUER": "https://app.example",
    "CHAT_APP_TOKEN_AUDIENCE": "chat",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatProcess]:
    process = chat_serve(tmp_path_factory.mktemp("quick-start"), ENV).start()
    yield process
    assert process.stop() == 0, process.log()


def quick_start_code() -> str:
    text = (ROOT / "docs" / "app-integration.md").read_text()
    section = text[text.index("## Quick start") :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None, "the quick start has a python block"
    return found.group(1)


@pytest.fixture(scope="module")
def quick_start(server: ChatProcess) -> dict[str, Any]:
    """What the quick start's code leaves behind, run with an operator's fresh key."""
    made = subprocess.run(
        [CHAT, "keys", "create", "--scope", "users:write", "--scope", "rooms:write"],
        cwd=server.workdir,
        env=clean_env(server.env),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    code = re.sub(
        r"^CHAT, SECRET, KEY = .*$",
        f"CHAT, SECRET, KEY = {server.url!r}, {SECRET!r}, {made.stdout.strip()!r}",
        quick_start_code(),
        flags=re.M,
    )
    scope: dict[str, Any] = {}
    exec(compile(code, "app-integration.md", "exec"), scope)  # our own docs' code
    return scope


async def test_the_quick_start_works_as_written(
    server: ChatProcess, quick_start: dict[str, Any]
) -> None:
    scope = quick_start
    room, ann = scope["room"], scope["ann"]
    assert [m["user_id"] for m in room["members"]] == [ann["id"], scope["bob"]["id"]]
    token = scope["chat_token"]("42", "Ann")
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
        assert (await http.get("/api/v1/users/me", headers=headers)).json()["user"] == ann
        rooms = (await http.get("/api/v1/rooms", headers=headers)).json()["rooms"]
        assert [r["id"] for r in rooms] == [room["id"]]
        # `both`: our own accounts still register and log in beside the app's users.
        creds = {"username": "local_ann", "password": "correct horse battery"}
        assert (await http.post("/api/v1/auth/register", json=creds)).status_code == 201
        assert (await http.post("/api/v1/auth/login", json=creds)).status_code == 200
    socket = await Socket(server.url, token).connect()
    await socket.disconnect()
