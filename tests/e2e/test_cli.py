"""The `chat` command as an operator meets it: versions, help, configuration mistakes told in
one line with exit code 2, runtime failures in one line with exit code 1, and the admin
commands against a running embedded service and against PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.support.clients import Socket
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
        ["rooms", "list"],
        ["dead-letters", "list"],
        ["dead-letters", "replay"],
    ):
        helped = chat(*command, "--help", cwd=tmp_path)
        assert helped.returncode == 0, helped.stderr
        assert "CHAT_" in helped.stdout or command == ["config"], command
    assert "CHAT_DATABASE_URL" in chat("migrate", "--help", cwd=tmp_path).stdout
    for action in ("list", "replay"):
        helped = chat("dead-letters", action, "--help", cwd=tmp_path).stdout
        assert all(
            v in helped for v in ("CHAT_BROKER", "CHAT_RABBITMQ_URL", "CHAT_RABBITMQ_PREFIX")
        )


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
