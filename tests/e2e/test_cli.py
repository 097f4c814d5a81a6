"""The `chat` command as an operator meets it: versions, help, configuration mistakes told in
one line with exit code 2, runtime failures in one line with exit code 1, and the admin
commands against a running embedded service and against PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import pytest
import socketio

from tests.support.clients import Socket
from tests.support.cluster import fresh_database
from tests.support.processes import CHAT, ChatProcess, chat_serve, clean_env
from tests.support.services import POSTGRES, require


def chat(
    *args: str, env: dict[str, str] | None = None, cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHAT, *args],
        cwd=cwd,
        env=clean_env(env or {}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_and_help_name_what_each_command_reads(tmp_path: Path) -> None:
    version = chat("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("chat ")
    for command in (
        ["serve"],
        ["worker"],
        ["migrate"],
        ["config"],
        ["users", "create"],
        ["users", "deactivate"],
        ["users", "reactivate"],
        ["users", "reset-password"],
        ["rooms", "list"],
    ):
        helped = chat(*command, "--help", cwd=tmp_path)
        assert helped.returncode == 0, helped.stderr
        assert "CHAT_" in helped.stdout or command == ["config"], command
    assert "CHAT_DATABASE_URL" in chat("migrate", "--help", cwd=tmp_path).stdout


# Each bad setting: the one line it must print (after "chat: configuration error: ").
BAD_SETTINGS = [
    (
        {"CHAT_RABBITMQ_PARTITIONS": "0"},
        "CHAT_RABBITMQ_PARTITIONS=0: must be at least 1 (for example CHAT_RABBITMQ_PARTITIONS=64)",
    ),
    ({"CHAT_LOG_LEVEL": "verbose"}, "CHAT_LOG_LEVEL=verbose: must be 'DEBUG', 'INFO'"),
    ({"CHAT_DATABASE_URL": "mysql://x"}, "CHAT_DATABASE_URL=mysql://x: scheme mysql://"),
    ({"CHAT_CORS_ORIGINS": "a.example"}, "CHAT_CORS_ORIGINS=a.example: 'a.example' is not an"),
    ({"CHAT_BROKR": "rabbitmq"}, "CHAT_BROKR is not a setting; did you mean CHAT_BROKER?"),
    ({"CHAT_REDIS_URL": "http://r"}, "CHAT_REDIS_URL=http://r: scheme http:// is not supported"),
    ({"CHAT_BROKER": "kafka"}, "CHAT_BROKER=kafka: must be 'memory' or 'rabbitmq'"),
    (
        {"CHAT_ENV": "production"},
        "CHAT_ENV=production needs CHAT_SECRET_KEY of at least 32 characters",
    ),
    (
        {"CHAT_EMBEDDED_WORKER": "false"},
        "CHAT_EMBEDDED_WORKER=false needs CHAT_BROKER=rabbitmq",
    ),
    (
        {"CHAT_AUTH_MODE": "app"},
        "CHAT_AUTH_MODE=app needs exactly one of CHAT_APP_TOKEN_SECRET, CHAT_APP_JWKS_URL",
    ),
    (
        {"CHAT_APP_JWKS_URL": "ftp://keys"},
        "CHAT_APP_JWKS_URL=ftp://keys: scheme ftp:// is not supported",
    ),
]


@pytest.mark.parametrize(
    ("env", "line"), BAD_SETTINGS, ids=[next(iter(e)) for e, _ in BAD_SETTINGS]
)
def test_a_bad_setting_is_one_line_and_exit_code_2(
    tmp_path: Path, env: dict[str, str], line: str
) -> None:
    _assert_refused(chat("serve", env=env, cwd=tmp_path), line)


@pytest.mark.parametrize("command", ["worker", "config", "migrate", "rooms list"])
def test_every_command_refuses_a_bad_setting_the_same_way(tmp_path: Path, command: str) -> None:
    env, line = BAD_SETTINGS[0]
    _assert_refused(chat(*command.split(), env=env, cwd=tmp_path), line)


def _assert_refused(result: subprocess.CompletedProcess[str], line: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"chat: configuration error: {line}"), lines[0]


def test_a_bad_setting_in_the_env_file_is_refused_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CHAT_SOCKETIO_MANGER=redis\n")
    result = chat("config", cwd=tmp_path)
    assert result.returncode == 2
    assert "CHAT_SOCKETIO_MANGER is not a setting; did you mean CHAT_SOCKETIO_MANAGER?" in (
        result.stderr
    )


def test_config_shows_the_effective_values_with_secrets_masked(tmp_path: Path) -> None:
    result = chat(
        "config",
        env={
            "CHAT_SECRET_KEY": "s3cret-" * 8,
            "CHAT_RABBITMQ_URL": "amqp://chat:hunter2hunter2@mq.internal:5672/",
            "CHAT_CORS_ORIGINS": "https://a.example,https://b.example",
        },
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    shown = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert shown["CHAT_SECRET_KEY"] == "****"
    assert shown["CHAT_RABBITMQ_URL"] == "amqp://chat:****@mq.internal:5672/"
    assert shown["CHAT_CORS_ORIGINS"] == "https://a.example,https://b.example"
    assert shown["CHAT_EMBEDDED_WORKER"] == "true"  # derived from CHAT_BROKER=memory
    assert "s3cret" not in result.stdout and "hunter2" not in result.stdout


def test_migrate_with_the_database_down_is_one_line_and_exit_code_1(tmp_path: Path) -> None:
    result = chat(
        "migrate",
        env={"CHAT_DATABASE_URL": "postgresql+asyncpg://chat:pw@127.0.0.1:1/chat"},
        cwd=tmp_path,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("chat migrate: cannot use the database at ")
    assert "postgresql+asyncpg://chat:****@127.0.0.1:1/chat" in lines[0]
    assert "CHAT_DATABASE_URL" in lines[0]


def _log_in(url: str, username: str, password: str) -> int:
    response = httpx.post(
        f"{url}/api/v1/auth/login", json={"username": username, "password": password}
    )
    return response.status_code


def test_admin_commands_beside_a_running_embedded_server(tmp_path: Path) -> None:
    server: ChatProcess = chat_serve(tmp_path).start()
    try:
        name = f"op{uuid.uuid4().hex[:10]}"
        created = chat("users", "create", name, "--password", "correct-horse-9", cwd=tmp_path)
        assert created.returncode == 0, created.stderr
        assert _log_in(server.url, name, "correct-horse-9") == 200
        again = chat("users", "create", name, "--password", "correct-horse-9", cwd=tmp_path)
        assert again.returncode == 1
        assert again.stderr.strip() == "chat users create: username: already taken"
        token = httpx.post(
            f"{server.url}/api/v1/auth/login",
            json={"username": name, "password": "correct-horse-9"},
        ).json()["access_token"]
        room = httpx.post(
            f"{server.url}/api/v1/rooms",
            json={"name": "ops room", "member_ids": []},
            headers={"Authorization": f"Bearer {token}"},
        ).json()["room"]
        listed = chat("rooms", "list", "--limit", "5", cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        rows = [line.split("\t") for line in listed.stdout.splitlines()[1:]]
        assert [room["id"], "group", "1", "0", "ops room"] in rows
    finally:
        assert server.stop() == 0, server.log()


def test_admin_commands_against_postgresql(tmp_path: Path) -> None:
    require(POSTGRES)
    database = f"chat_cli_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{database}"'))
    env = {"CHAT_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"}
    try:
        migrated = chat("migrate", env=env, cwd=tmp_path)
        assert migrated.returncode == 0, migrated.stderr
        created = chat(
            "users", "create", "pgoperator", "--password", "correct-horse-9", env=env, cwd=tmp_path
        )
        assert created.returncode == 0, created.stderr
        listed = chat("rooms", "list", env=env, cwd=tmp_path)
        assert listed.returncode == 0 and listed.stdout.splitlines() == [
            "id\tkind\tmembers\tlast_seq\tname"
        ]
        weak = chat("users", "create", "pgweak", "--password", "short", env=env, cwd=tmp_path)
        assert weak.returncode == 1
        assert weak.stderr.strip().startswith("chat users create: password: must be 8..128")
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def test_prune_erases_old_bodies_beside_a_running_server(tmp_path: Path) -> None:
    server: ChatProcess = chat_serve(tmp_path).start()
    try:
        name = f"ret{uuid.uuid4().hex[:10]}"
        assert chat("users", "create", name, "--password", "correct-horse-9", cwd=tmp_path)
        headers = {
            "Authorization": "Bearer "
            + httpx.post(
                f"{server.url}/api/v1/auth/login",
                json={"username": name, "password": "correct-horse-9"},
            ).json()["access_token"]
        }
        room = httpx.post(
            f"{server.url}/api/v1/rooms", json={"name": "r", "member_ids": []}, headers=headers
        ).json()["room"]
        messages_url = f"{server.url}/api/v1/rooms/{room['id']}/messages"

        async def send_and_wait_stored() -> None:
            socket = await Socket(server.url, headers["Authorization"][7:]).connect()
            try:
                async with httpx.AsyncClient(headers=headers) as http:
                    for body in ("first", "second"):
                        response = await http.post(messages_url, json={"body": body})
                        assert response.status_code == 202
                await socket.wait_for("message:new", count=2, timeout=15)
            finally:
                await socket.disconnect()

        def history() -> list[dict[str, object]]:
            page = httpx.get(messages_url, params={"after_seq": 0}, headers=headers).json()
            return list(page["messages"])

        asyncio.run(send_and_wait_stored())
        nothing = chat("prune", cwd=tmp_path)
        assert nothing.returncode == 0 and nothing.stdout.startswith("nothing pruned")
        # Age the first message by 40 days, as time would.
        with sqlite3.connect(tmp_path / "var" / "chat.db") as db:
            db.execute(
                "UPDATE messages SET created_at = datetime(created_at, '-40 days') WHERE seq = 1"
                " AND room_id = ?",
                (room["id"],),
            )
        pruned = chat("prune", env={"CHAT_RETENTION_DAYS": "30"}, cwd=tmp_path)
        assert pruned.returncode == 0, pruned.stderr
        assert pruned.stdout.strip() == "erased the bodies of 1 messages older than 30 days"
        first, second = history()
        assert (first["seq"], first["body"], first["deleted"]) == (1, "", True)
        assert (second["seq"], second["body"], second["deleted"]) == (2, "second", False)
    finally:
        assert server.stop() == 0, server.log()


# --- users deactivate / reactivate / reset-password -----------------------------------------

# The servers' recheck interval in these tests (CHAT_SESSION_RECHECK_SECONDS): what an
# operator's change takes at most to reach a node. The waits below allow it and a margin.
RECHECK_S = 1
WITHIN_S = RECHECK_S + 14
FAST_RECHECK = {"CHAT_SESSION_RECHECK_SECONDS": str(RECHECK_S)}
PASSWORD, NEW_PASSWORD = "correct-horse-9", "staple-battery-42"


def _login_token(url: str, username: str, password: str) -> str:
    response = httpx.post(
        f"{url}/api/v1/auth/login", json={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def _rooms_status(url: str, token: str) -> int:
    response = httpx.get(f"{url}/api/v1/rooms", headers={"Authorization": f"Bearer {token}"})
    return response.status_code


def _within(condition: Callable[[], bool], what: str) -> None:
    """Wait until ``condition`` holds, at most WITHIN_S: the change reaches a node through
    the database, with no event a client could wait on, so the client asks again."""
    deadline = time.monotonic() + WITHIN_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {WITHIN_S} s: {what}"
        time.sleep(0.2)


class Connected:
    """A socket.io client that was accepted, and an event set when the server drops it."""

    def __init__(self, url: str, token: str) -> None:
        self.socket = Socket(url, token)
        self.dropped = asyncio.Event()
        self.socket.client.on("disconnect", self._dropped)

    async def _dropped(self, *_: object) -> None:
        self.dropped.set()

    async def dropped_within(self) -> None:
        await asyncio.wait_for(self.dropped.wait(), WITHIN_S)


async def _refused_connect(url: str, token: str) -> object:
    client = socketio.AsyncClient(reconnection=False)
    errors: asyncio.Queue[object] = asyncio.Queue()
    client.on("connect_error", errors.put_nowait)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=5)
    await client.disconnect()
    return await asyncio.wait_for(errors.get(), 5)


def test_a_deactivated_user_is_out_of_a_running_server_until_reactivated(tmp_path: Path) -> None:
    server: ChatProcess = chat_serve(tmp_path, FAST_RECHECK).start()
    try:
        name = f"gone{uuid.uuid4().hex[:10]}"
        assert chat("users", "create", name, "--password", PASSWORD, cwd=tmp_path).returncode == 0
        token = _login_token(server.url, name, PASSWORD)
        assert _rooms_status(server.url, token) == 200  # the node has read the user now

        async def deactivate_while_connected() -> None:
            connected = Connected(server.url, token)
            await connected.socket.connect()
            deactivated = await asyncio.to_thread(chat, "users", "deactivate", name, cwd=tmp_path)
            assert deactivated.returncode == 0, deactivated.stderr
            assert deactivated.stdout.startswith(f"deactivated user {name} (")
            await connected.dropped_within()
            assert await _refused_connect(server.url, token) == {"message": "unauthorized"}

        asyncio.run(deactivate_while_connected())
        assert _log_in(server.url, name, PASSWORD) == 401  # as a wrong password
        _within(lambda: _rooms_status(server.url, token) == 401, "old token refused")

        reactivated = chat("users", "reactivate", name, cwd=tmp_path)
        assert reactivated.returncode == 0, reactivated.stderr
        fresh = _login_token(server.url, name, PASSWORD)
        assert _rooms_status(server.url, fresh) == 200
        assert _rooms_status(server.url, token) == 401  # sessions from before stay ended

        ghost = chat("users", "deactivate", "ghost-user", cwd=tmp_path)
        assert ghost.returncode == 1
        assert ghost.stderr.strip() == "chat users deactivate: no user named 'ghost-user'"
    finally:
        assert server.stop() == 0, server.log()


def test_a_password_reset_ends_the_old_password_and_sessions(tmp_path: Path) -> None:
    server: ChatProcess = chat_serve(tmp_path, FAST_RECHECK).start()
    try:
        name = f"reset{uuid.uuid4().hex[:10]}"
        assert chat("users", "create", name, "--password", PASSWORD, cwd=tmp_path).returncode == 0
        token = _login_token(server.url, name, PASSWORD)
        assert _rooms_status(server.url, token) == 200

        weak = chat("users", "reset-password", name, "--password", "short", cwd=tmp_path)
        assert weak.returncode == 1
        assert weak.stderr.strip().startswith("chat users reset-password: password: must be")
        assert _log_in(server.url, name, PASSWORD) == 200  # nothing changed

        async def reset_while_connected() -> None:
            connected = Connected(server.url, token)
            await connected.socket.connect()
            reset = await asyncio.to_thread(
                chat, "users", "reset-password", name, "--password", NEW_PASSWORD, cwd=tmp_path
            )
            assert reset.returncode == 0, reset.stderr
            await connected.dropped_within()

        asyncio.run(reset_while_connected())
        assert _log_in(server.url, name, PASSWORD) == 401
        fresh = _login_token(server.url, name, NEW_PASSWORD)
        assert _rooms_status(server.url, fresh) == 200  # a newer token is read at once
        _within(lambda: _rooms_status(server.url, token) == 401, "old token refused")
    finally:
        assert server.stop() == 0, server.log()


def test_account_changes_reach_every_node_on_postgresql(tmp_path: Path) -> None:
    """Two nodes on one PostgreSQL database: the CLI reaches neither, only the database."""
    require(POSTGRES)
    with fresh_database() as url:
        # One signing key for both nodes, as a deployment has (else each makes its own).
        env = {"CHAT_DATABASE_URL": url, "CHAT_SECRET_KEY": "e2e-" + "k" * 40, **FAST_RECHECK}
        migrated = chat("migrate", env=env, cwd=tmp_path)
        assert migrated.returncode == 0, migrated.stderr
        nodes = [chat_serve(tmp_path / f"node{i}", env, name=f"node{i}") for i in (1, 2)]
        for node in nodes:
            node.start()
        try:
            first, second = (node.url for node in nodes)
            name = f"pg{uuid.uuid4().hex[:10]}"
            created = chat("users", "create", name, "--password", PASSWORD, env=env, cwd=tmp_path)
            assert created.returncode == 0, created.stderr
            token = _login_token(first, name, PASSWORD)
            assert _rooms_status(first, token) == _rooms_status(second, token) == 200

            async def change_while_connected(*command: str) -> None:
                connected = Connected(second, token)
                await connected.socket.connect()
                changed = await asyncio.to_thread(chat, *command, env=env, cwd=tmp_path)
                assert changed.returncode == 0, changed.stderr
                await connected.dropped_within()

            asyncio.run(
                change_while_connected("users", "reset-password", name, "--password", NEW_PASSWORD)
            )
            assert _log_in(first, name, PASSWORD) == _log_in(second, name, PASSWORD) == 401
            for node_url in (first, second):
                _within(lambda u=node_url: _rooms_status(u, token) == 401, "old token refused")
            token = _login_token(second, name, NEW_PASSWORD)
            assert _rooms_status(first, token) == 200

            asyncio.run(change_while_connected("users", "deactivate", name))
            assert _log_in(first, name, NEW_PASSWORD) == 401
            for node_url in (first, second):
                _within(lambda u=node_url: _rooms_status(u, token) == 401, "token refused")
        finally:
            for node in nodes:
                assert node.stop() == 0, node.log()
