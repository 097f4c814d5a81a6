"""The server API as the app's backend meets it: API keys an operator makes and revokes
with `chat keys`, each endpoint called with every scope (the authorisation matrix), a
revocation refused from the very next call, and the message path's guarantees (202 after
the broker's confirm, one message per ``client_msg_id``)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.clients import Account, Api, Socket
from tests.support.processes import CHAT, ChatProcess, chat_serve, clean_env

SCOPES = ("users:write", "rooms:write", "messages:write", "messages:read")
BAD_KEYS = ("no_key", "unknown_key", "revoked_key")
IDENTITIES = BAD_KEYS + SCOPES


def chat_keys(server: ChatProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """`chat keys ...` against the server's own database (its working directory)."""
    result = subprocess.run(
        [CHAT, "keys", *args],
        cwd=server.workdir,
        env=clean_env(server.env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


def create_key(server: ChatProcess, *scopes: str) -> str:
    args = [arg for scope in scopes for arg in ("--scope", scope)]
    return chat_keys(server, "create", "--name", "e2e", *args).stdout.strip()


def key_id_of(server: ChatProcess, key_count: int) -> str:
    """The id of the newest key, once ``key_count`` keys exist."""
    rows = chat_keys(server, "list").stdout.strip().splitlines()[1:]
    assert len(rows) == key_count, rows
    return rows[-1].split("\t")[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatProcess]:
    process = chat_serve(tmp_path_factory.mktemp("server-api")).start()
    yield process
    assert process.stop() == 0, process.log()


@dataclass
class Keys:
    by_identity: dict[str, str | None] = field(default_factory=dict)
    everything: str = ""


@pytest.fixture(scope="module")
def keys(server: ChatProcess) -> Keys:
    made = Keys()
    for scope in SCOPES:
        made.by_identity[scope] = create_key(server, scope)
    made.everything = create_key(server, *SCOPES)
    revoked = create_key(server, *SCOPES)
    revoked_id = key_id_of(server, len(SCOPES) + 2)
    chat_keys(server, "revoke", revoked_id)
    made.by_identity.update(no_key=None, unknown_key="chk_" + uuid.uuid4().hex, revoked_key=revoked)
    return made


def headers_of(key: str | None, style: str = "bearer") -> dict[str, str]:
    if key is None:
        return {}
    return {"X-API-Key": key} if style == "header" else {"Authorization": f"Bearer {key}"}


@dataclass
class World:
    """What one cell acts on: an owner and a member (accounts) in a fresh room."""

    owner: Account
    member: Account
    room_id: str


Request = Callable[[World], tuple[str, str, dict[str, Any]]]


@dataclass(frozen=True)
class Row:
    """One endpoint: how to call it, the scope it needs and its success status."""

    method: str
    rule: str
    scope: str
    ok: int
    request: Request


REST_ROWS = [
    Row(
        "POST",
        "/api/v1/server/users",
        "users:write",
        201,
        lambda w: ("POST", "/api/v1/server/users", {"json": {"sub": uuid.uuid4().hex}}),
    ),
    Row(
        "POST",
        "/api/v1/server/users/<user_id>/deactivate",
        "users:write",
        200,
        lambda w: ("POST", f"/api/v1/server/users/{w.member.id}/deactivate", {}),
    ),
    Row(
        "POST",
        "/api/v1/server/rooms",
        "rooms:write",
        201,
        lambda w: (
            "POST",
            "/api/v1/server/rooms",
            {"json": {"name": "made by the app", "owner_id": w.owner.id}},
        ),
    ),
    Row(
        "PUT",
        "/api/v1/server/rooms/<room_id>/members",
        "rooms:write",
        200,
        lambda w: (
            "PUT",
            f"/api/v1/server/rooms/{w.room_id}/members",
            {"json": {"member_ids": [w.owner.id]}},
        ),
    ),
    Row(
        "POST",
        "/api/v1/server/rooms/<room_id>/messages",
        "messages:write",
        202,
        lambda w: (
            "POST",
            f"/api/v1/server/rooms/{w.room_id}/messages",
            {"json": {"body": "from the app"}},
        ),
    ),
    Row(
        "GET",
        "/api/v1/server/rooms/<room_id>/messages",
        "messages:read",
        200,
        lambda w: ("GET", f"/api/v1/server/rooms/{w.room_id}/messages", {}),
    ),
]


def expected(row: Row, identity: str) -> int:
    if identity in BAD_KEYS:
        return 401
    return row.ok if identity == row.scope else 403


async def new_world(api: Api) -> World:
    owner, member = await api.signup("own"), await api.signup("mem")
    room = await api.create_room(owner, member, name="server-api")
    return World(owner, member, room["id"])


@pytest.mark.parametrize("row", REST_ROWS, ids=lambda r: f"{r.method} {r.rule}")
async def test_server_row(api: Api, keys: Keys, row: Row) -> None:
    """Every key on one endpoint; all wrong cells are reported together."""
    world = await new_world(api)
    wrong: list[str] = []
    for identity in IDENTITIES:
        method, path, kwargs = row.request(world)
        key = keys.by_identity[identity]
        r = await api.http.request(method, path, headers=headers_of(key), **kwargs)
        if r.status_code != expected(row, identity):
            wrong.append(
                f"{identity}: {r.status_code} (expected {expected(row, identity)}) {r.text}"
            )
        elif r.status_code >= 400:
            code = {401: "unauthorized", 403: "forbidden"}[r.status_code]
            if r.json()["error"]["code"] != code:
                wrong.append(f"{identity}: error shape {r.text}")
    # The key with every scope, sent in the other header, may do it too.
    method, path, kwargs = row.request(await new_world(api))
    r = await api.http.request(
        method, path, headers=headers_of(keys.everything, "header"), **kwargs
    )
    if r.status_code != row.ok:
        wrong.append(f"every scope (X-API-Key): {r.status_code} {r.text}")
    assert wrong == []


def test_the_matrix_covers_every_server_route(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app's real server API routes, listed in-process, against the rows."""
    from chat_bootstrap.container import build_container
    from chat_bootstrap.settings import Settings
    from chat_server.api.server import SCOPE_OF
    from chat_server.app import create_quart_app

    monkeypatch.chdir(tmp_path)
    # Building a server sets its JSON codec class-wide: undo that for this process's clients.
    import engineio.packet
    import socketio.packet

    monkeypatch.setattr(engineio.packet.Packet, "json", engineio.packet.Packet.json)
    monkeypatch.setattr(socketio.packet.Packet, "json", socketio.packet.Packet.json)
    container = build_container(
        Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{tmp_path}/x.db"),  # type: ignore[call-arg]
        role="server",
    )
    app = create_quart_app(container)
    routes = {
        (method, rule.rule, SCOPE_OF[rule.endpoint].value)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/server/")
        for method in rule.methods or ()
        if method not in {"HEAD", "OPTIONS"}
    }
    assert routes == {(r.method, r.rule, r.scope) for r in REST_ROWS}, "every route needs a row"


async def test_a_revoked_key_is_refused_from_the_next_call(server: ChatProcess, api: Api) -> None:
    before = len(chat_keys(server, "list").stdout.strip().splitlines()) - 1
    key = create_key(server, "users:write")
    key_id = key_id_of(server, before + 1)
    call = {"json": {"sub": "revocation-check"}, "headers": headers_of(key)}
    assert (await api.http.post("/api/v1/server/users", **call)).status_code in (200, 201)
    chat_keys(server, "revoke", key_id)
    r = await api.http.post("/api/v1/server/users", **call)  # same server, no restart
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", r.text
    listed = chat_keys(server, "list").stdout
    assert key not in listed  # the key itself is never shown again
    revoked_row = next(line for line in listed.splitlines() if line.startswith(key_id))
    assert revoked_row.split("\t")[3] != "-"


async def test_the_app_runs_a_room_for_its_users(server: ChatProcess, api: Api, keys: Keys) -> None:
    """Upsert a user, make a room, set its members, post as a member and as the system
    (once per client_msg_id), and read the history back."""
    key = headers_of(keys.everything)
    http = api.http
    owner = await api.signup("boss")
    made = await http.post(
        "/api/v1/server/users", json={"sub": "u-77", "display_name": "Ann"}, headers=key
    )
    again = await http.post("/api/v1/server/users", json={"sub": "u-77"}, headers=key)
    assert (made.status_code, again.status_code) == (201, 200), (made.text, again.text)
    app_user = made.json()["user"]
    assert app_user["id"] == "app:u-77" and again.json()["user"] == app_user
    room = await http.post(
        "/api/v1/server/rooms",
        json={"name": "support", "owner_id": owner.id, "member_ids": [app_user["id"]]},
        headers=key,
    )
    assert room.status_code == 201, room.text
    room_id = room.json()["room"]["id"]
    socket = await Socket(server.url, owner.token).connect()
    try:
        system = {"body": "Welcome!", "client_msg_id": "welcome-1"}
        first = await http.post(
            f"/api/v1/server/rooms/{room_id}/messages", json=system, headers=key
        )
        retry = await http.post(
            f"/api/v1/server/rooms/{room_id}/messages", json=system, headers=key
        )
        assert (first.status_code, retry.status_code) == (202, 202)
        assert first.json()["message"]["id"] == retry.json()["message"]["id"]
        assert first.json()["message"]["sender_id"] == "system"
        as_user = await http.post(
            f"/api/v1/server/rooms/{room_id}/messages",
            json={"body": "hi, I need help", "sender_id": app_user["id"]},
            headers=key,
        )
        assert as_user.status_code == 202, as_user.text
        await socket.wait_for("message:new", lambda m: m["body"] == "hi, I need help")
        await socket.wait_for("message:new", lambda m: m["id"] == first.json()["message"]["id"])
        history = await http.get(f"/api/v1/server/rooms/{room_id}/messages", headers=key)
        bodies = [m["body"] for m in history.json()["messages"]]
        assert sorted(bodies) == ["Welcome!", "hi, I need help"]  # the retry stored once
        members = await http.put(
            f"/api/v1/server/rooms/{room_id}/members", json={"member_ids": [owner.id]}, headers=key
        )
        assert [m["user_id"] for m in members.json()["room"]["members"]] == [owner.id]
        refused = await http.post(
            f"/api/v1/server/rooms/{room_id}/messages",
            json={"body": "still here?", "sender_id": app_user["id"]},
            headers=key,
        )
        assert refused.status_code == 404  # no longer a member
    finally:
        await socket.disconnect()


async def test_the_app_deactivates_a_user_whose_token_then_fails(
    server: ChatProcess, api: Api, keys: Keys
) -> None:
    ann = await api.signup("ann")
    assert (await api.http.get("/api/v1/users/me", headers=ann.headers)).status_code == 200
    r = await api.http.post(
        f"/api/v1/server/users/{ann.id}/deactivate", headers=headers_of(keys.everything)
    )
    assert r.status_code == 200 and r.json()["user"]["id"] == ann.id
    again = await api.http.post(
        f"/api/v1/server/users/{ann.id}/deactivate", headers=headers_of(keys.everything)
    )
    assert again.status_code == 200  # deactivating twice changes nothing
    # The node that served the token rechecks the user within CHAT_SESSION_RECHECK_SECONDS;
    # a login is refused at once.
    password = "correct horse battery"  # tests.support.clients.Api.signup's
    login = await api.http.post(
        "/api/v1/auth/login", json={"username": ann.username, "password": password}
    )
    assert login.status_code == 401
    unknown = await api.http.post(
        f"/api/v1/server/users/{uuid.uuid4()}/deactivate", headers=headers_of(keys.everything)
    )
    assert unknown.status_code == 404
