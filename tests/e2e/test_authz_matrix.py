"""Who may call what: every REST endpoint and every socket.io client event, as each identity.

Identities: no token, a malformed token, a token signed with another key, an unsigned
token (alg "none"), an expired token, a well-signed token of a user that does not
exist, a user who is not a member of the room, a member, the room's owner. Each cell
of the matrix states the answer (status, or the ack's error code).

The matrix must list every route of the app and every socket.io handler: a new
endpoint or event without its row fails ``test_the_matrix_covers_every_route_and_event``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import socketio

from tests.support.clients import Account, Api, Socket
from tests.support.processes import ChatProcess, chat_serve

SECRET = "authz-matrix-secret-key-0123456789abcdef"
PASSWORD = "correct horse battery"

BAD_TOKENS = ("none", "malformed", "wrong_signature", "alg_none", "expired", "unknown_user")
USERS = ("non_member", "member", "owner")
IDENTITIES = BAD_TOKENS + USERS


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatProcess]:
    """Embedded `chat serve` with a known signing key, so the test can forge tokens."""
    process = chat_serve(tmp_path_factory.mktemp("authz"), {"CHAT_SECRET_KEY": SECRET}).start()
    yield process
    assert process.stop() == 0, process.log()


@dataclass
class People:
    owner: Account
    member: Account
    bystander: Account  # a second member: the one removed in the "remove member" row
    outsider: Account  # the non-member
    newcomer: Account  # never in a room until the "add member" row adds them


def _signup(http: httpx.Client, prefix: str) -> Account:
    username = f"{prefix}_{uuid.uuid4().hex[:10]}"
    creds = {"username": username, "password": PASSWORD}
    assert http.post("/api/v1/auth/register", json=creds).status_code == 201
    body = http.post("/api/v1/auth/login", json=creds).json()
    return Account(body["user"]["id"], username, body["access_token"])


@pytest.fixture(scope="module")
def people(server: ChatProcess) -> People:
    with httpx.Client(base_url=server.url, timeout=15) as http:
        return People(*(_signup(http, p) for p in ("own", "mem", "bys", "out", "new")))


def forge(claims: dict[str, Any], key: str | None = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def token_of(identity: str, people: People) -> str | None:
    now = int(time.time())
    valid = {"sub": people.owner.id, "iat": now, "exp": now + 3600}
    return {
        "none": None,
        "malformed": "not-a-jwt",
        "wrong_signature": forge(valid, key="another-key-another-key-another-key!!"),
        "alg_none": forge(valid, key=None, algorithm="none"),
        "expired": forge({"sub": people.owner.id, "iat": now - 7200, "exp": now - 3600}),
        "unknown_user": forge({**valid, "sub": str(uuid.uuid4())}),
        "non_member": people.outsider.token,
        "member": people.member.token,
        "owner": people.owner.token,
    }[identity]


@dataclass
class World:
    """What one cell acts on: a fresh room (owner, member, bystander) and the owner's message."""

    people: People
    room_id: str = ""
    message_id: str = ""
    caller: str = ""  # the identity making the call, for rows whose path names the caller

    def caller_id(self) -> str:
        """The user id of a user identity (the owner's for the bad tokens, which forge it)."""
        people = self.people
        ids = {"non_member": people.outsider.id, "member": people.member.id}
        return ids.get(self.caller, people.owner.id)


Request = Callable[[World], tuple[str, dict[str, Any]]]
Prepare = Callable[[Api, World], Awaitable[None]]


@dataclass(frozen=True)
class Row:
    """One endpoint: how to call it, and the status each identity gets.

    ``public`` rows answer ``ok`` whatever the token. Other rows answer 401 to every
    bad token; ``answers`` gives the status of the non-member, the member and the owner.
    """

    method: str
    rule: str
    request: Request
    answers: dict[str, int] = field(default_factory=dict)
    public: int | None = None
    room_scoped: bool = False
    needs_message: bool = False
    mutates: bool = False  # the member's and the owner's calls each get a fresh room
    prepare: Prepare | None = None  # more state for the row, on each room it acts on
    label: str = ""  # tells apart rows of one endpoint

    @property
    def name(self) -> str:
        return f"{self.method} {self.rule}" + (f" ({self.label})" if self.label else "")

    def expected(self, identity: str) -> int:
        if self.public is not None:
            return self.public
        return 401 if identity in BAD_TOKENS else self.answers[identity]


def everyone(status: int) -> dict[str, int]:
    return dict.fromkeys(USERS, status)


def members_only(member: int, owner: int | None = None) -> dict[str, int]:
    return {"non_member": 404, "member": member, "owner": member if owner is None else owner}


def fresh_user_body(w: World) -> tuple[str, dict[str, Any]]:
    return "", {"json": {"username": f"n_{uuid.uuid4().hex[:12]}", "password": PASSWORD}}


async def owner_removes_the_bystander(api: Api, w: World) -> None:
    r = await api.http.delete(
        f"/api/v1/rooms/{w.room_id}/members/{w.people.bystander.id}",
        headers=w.people.owner.headers,
    )
    assert r.status_code == 204, r.text


ROOM = "/api/v1/rooms/{room}"
REST_ROWS: list[Row] = [
    Row(
        "POST",
        "/api/v1/auth/register",
        lambda w: ("/api/v1/auth/register", fresh_user_body(w)[1]),
        public=201,
    ),
    Row("POST", "/api/v1/auth/login", lambda w: ("/api/v1/auth/login", {}), public=200),
    Row("GET", "/api/v1/users/me", lambda w: ("/api/v1/users/me", {}), everyone(200)),
    Row(
        "GET", "/api/v1/users", lambda w: ("/api/v1/users", {"params": {"q": "own"}}), everyone(200)
    ),
    Row(
        "POST",
        "/api/v1/rooms",
        lambda w: ("/api/v1/rooms", {"json": {"name": "r", "member_ids": []}}),
        everyone(201),
    ),
    Row("GET", "/api/v1/rooms", lambda w: ("/api/v1/rooms", {}), everyone(200)),
    Row(
        "GET",
        "/api/v1/rooms/<room_id>",
        lambda w: (f"/api/v1/rooms/{w.room_id}", {}),
        members_only(200),
        room_scoped=True,
    ),
    Row(
        "POST",
        "/api/v1/rooms/<room_id>/members",
        lambda w: (
            f"/api/v1/rooms/{w.room_id}/members",
            {"json": {"user_id": w.people.newcomer.id}},
        ),
        members_only(201),  # any member may add
        room_scoped=True,
        mutates=True,
    ),
    Row(
        "DELETE",
        "/api/v1/rooms/<room_id>/members/<user_id>",
        lambda w: (f"/api/v1/rooms/{w.room_id}/members/{w.people.bystander.id}", {}),
        members_only(403, owner=204),  # only the owner removes another member
        room_scoped=True,
        mutates=True,
    ),
    Row(
        "POST",
        "/api/v1/rooms/<room_id>/members",
        lambda w: (
            f"/api/v1/rooms/{w.room_id}/members",
            {"json": {"user_id": w.people.bystander.id}},
        ),
        members_only(403, owner=201),  # whom the owner removed, only the owner adds back
        room_scoped=True,
        mutates=True,
        prepare=owner_removes_the_bystander,
        label="removed by the owner",
    ),
    Row(
        "DELETE",
        "/api/v1/rooms/<room_id>/members/<user_id>",
        lambda w: (f"/api/v1/rooms/{w.room_id}/members/{w.caller_id()}", {}),
        members_only(204, owner=409),  # the owner hands the room over before leaving
        room_scoped=True,
        mutates=True,
        label="leave",
    ),
    Row(
        "POST",
        "/api/v1/rooms/<room_id>/owner",
        lambda w: (f"/api/v1/rooms/{w.room_id}/owner", {"json": {"user_id": w.people.member.id}}),
        members_only(403, owner=200),  # only the owner hands the room over
        room_scoped=True,
        mutates=True,
    ),
    Row("GET", "/api/v1/users/me/blocks", lambda w: ("/api/v1/users/me/blocks", {}), everyone(200)),
    Row(
        "POST",
        "/api/v1/users/<user_id>/block",
        lambda w: (f"/api/v1/users/{w.people.newcomer.id}/block", {}),
        everyone(201),  # anyone may block anyone (each identity blocks once here)
    ),
    Row(
        "DELETE",
        "/api/v1/users/<user_id>/block",
        lambda w: (f"/api/v1/users/{w.people.newcomer.id}/block", {}),
        everyone(204),  # blocked or not: nothing left to lift
    ),
    Row(
        "POST",
        "/api/v1/rooms/<room_id>/messages",
        lambda w: (f"/api/v1/rooms/{w.room_id}/messages", {"json": {"body": "hi"}}),
        members_only(202),
        room_scoped=True,
    ),
    Row(
        "GET",
        "/api/v1/rooms/<room_id>/messages",
        lambda w: (f"/api/v1/rooms/{w.room_id}/messages", {}),
        members_only(200),
        room_scoped=True,
    ),
    Row(
        "PATCH",
        "/api/v1/rooms/<room_id>/messages/<message_id>",
        lambda w: (f"/api/v1/rooms/{w.room_id}/messages/{w.message_id}", {"json": {"body": "e"}}),
        members_only(403, owner=200),  # only the sender (the owner) edits
        room_scoped=True,
        needs_message=True,
    ),
    Row(
        "DELETE",
        "/api/v1/rooms/<room_id>/messages/<message_id>",
        lambda w: (f"/api/v1/rooms/{w.room_id}/messages/{w.message_id}", {}),
        members_only(403, owner=204),  # the sender, who is also the owner here
        room_scoped=True,
        mutates=True,
        needs_message=True,
    ),
    Row(
        "POST",
        "/api/v1/rooms/<room_id>/read",
        lambda w: (f"/api/v1/rooms/{w.room_id}/read", {"json": {"seq": 0}}),
        members_only(204),
        room_scoped=True,
    ),
    Row(
        "GET",
        "/api/v1/rooms/<room_id>/receipts",
        lambda w: (f"/api/v1/rooms/{w.room_id}/receipts", {}),
        members_only(200),
        room_scoped=True,
    ),
    # Public pages and operations: the same answer whatever the token.
    Row("GET", "/healthz", lambda w: ("/healthz", {}), public=200),
    Row("GET", "/readyz", lambda w: ("/readyz", {}), public=200),
    Row("GET", "/metrics", lambda w: ("/metrics", {}), public=200),
    Row("GET", "/openapi.json", lambda w: ("/openapi.json", {}), public=200),
    Row("GET", "/docs", lambda w: ("/docs", {}), public=200),
    Row("GET", "/", lambda w: ("/", {}), public=200),
    Row("GET", "/static/<path:filename>", lambda w: ("/static/app.js", {}), public=200),
]

SOCKET_PAYLOADS: dict[str, Callable[[str], dict[str, Any]]] = {
    "message:send": lambda room: {"room_id": room, "body": "hi"},
    "delivered": lambda room: {"room_id": room, "seq": 0},
    "read": lambda room: {"room_id": room, "seq": 0},
    "typing": lambda room: {"room_id": room, "is_typing": True},
    "sync": lambda room: {"room_id": room, "after_seq": 0},
}
SOCKET_ROWS = ("connect", *SOCKET_PAYLOADS)
# Server-side lifecycle handlers: no client can call them as events.
LIFECYCLE_HANDLERS = {"connect", "disconnect"}


async def make_world(api: Api, people: People, with_message: bool) -> World:
    room = await api.create_room(people.owner, people.member, people.bystander, name="authz")
    world = World(people, room["id"])
    if with_message:
        s = await Socket(api.base_url, people.owner.token).connect()
        try:
            r = await api.send(people.owner, room["id"], "the owner's message")
            assert r.status_code == 202, r.text
            world.message_id = r.json()["message"]["id"]
            await s.wait_for("message:new", lambda m: m["id"] == world.message_id)
        finally:
            await s.disconnect()
    return world


async def call_rest(api: Api, row: Row, world: World, token: str | None) -> httpx.Response:
    path, kwargs = row.request(world)
    if row.rule == "/api/v1/auth/login":
        # A fresh user per cell: the per-username login limit stays out of the picture.
        _, register = fresh_user_body(world)
        assert (await api.http.post("/api/v1/auth/register", **register)).status_code == 201
        kwargs = register
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return await api.http.request(row.method, path, headers=headers, **kwargs)


async def world_for(api: Api, people: People, row: Row) -> World:
    if not row.room_scoped:
        return World(people)
    world = await make_world(api, people, row.needs_message)
    if row.prepare is not None:
        await row.prepare(api, world)
    return world


@pytest.mark.parametrize("row", REST_ROWS, ids=lambda r: r.name)
async def test_rest_row(api: Api, people: People, row: Row) -> None:
    """Every identity on one endpoint; all wrong cells are reported together."""
    shared = await world_for(api, people, row)
    wrong: list[str] = []
    for identity in IDENTITIES:
        world = shared
        if row.room_scoped and row.mutates and identity in ("member", "owner"):
            world = await world_for(api, people, row)  # untouched by others
        world.caller = identity
        token = token_of(identity, people)
        r = await call_rest(api, row, world, token)
        if r.status_code != row.expected(identity):
            wrong.append(
                f"{identity}: {r.status_code} (expected {row.expected(identity)}) {r.text}"
            )
            continue
        if r.status_code >= 400:
            code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict"}[
                r.status_code
            ]
            if set(r.json()) != {"error"} or r.json()["error"]["code"] != code:
                wrong.append(f"{identity}: error shape {r.text}")
        if identity == "non_member" and row.room_scoped:
            # A stranger learns nothing: the answer is the one for a room that does not exist.
            ghost = World(people, str(uuid.uuid4()), str(uuid.uuid4()), caller=identity)
            r_ghost = await call_rest(api, row, ghost, token)
            if (r_ghost.status_code, r_ghost.json()) != (r.status_code, r.json()):
                wrong.append(f"non_member: {r.text} differs from a missing room's {r_ghost.text}")
    assert wrong == []


async def refused_connect(url: str, token: str | None) -> Any:
    client = socketio.AsyncClient(reconnection=False)
    errors: asyncio.Queue[Any] = asyncio.Queue()
    client.on("connect_error", errors.put_nowait)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(
            url,
            auth={"token": token} if token is not None else None,
            transports=["websocket"],
            wait_timeout=5,
        )
    await client.disconnect()
    return await asyncio.wait_for(errors.get(), 5)


@pytest.mark.parametrize("event", SOCKET_ROWS)
async def test_socket_row(api: Api, people: People, event: str) -> None:
    """Every identity on one socket.io event (or the connect itself)."""
    world = await make_world(api, people, with_message=False)
    wrong: list[str] = []
    for identity in IDENTITIES:
        token = token_of(identity, people)
        if identity in BAD_TOKENS:
            # No connection, so no event of any kind can be sent.
            refusal = await refused_connect(api.base_url, token)
            if refusal != {"message": "unauthorized"}:
                wrong.append(f"{identity}: connect_error {refusal}")
            continue
        s = await Socket(api.base_url, token).connect()
        try:
            if event == "connect":
                continue
            ack = await s.call(event, SOCKET_PAYLOADS[event](world.room_id))
            if identity == "non_member":
                if ack != {
                    "ok": False,
                    "error": {"code": "not_found", "message": "room not found"},
                }:
                    wrong.append(f"non_member: {ack}")
                ghost = await s.call(event, SOCKET_PAYLOADS[event](str(uuid.uuid4())))
                if ghost != ack:  # the same answer as for a room that does not exist
                    wrong.append(f"non_member: {ack} differs from a missing room's {ghost}")
            elif ack.get("ok") is not True:
                wrong.append(f"{identity}: {ack}")
        finally:
            await s.disconnect()
    assert wrong == []


def test_the_matrix_covers_every_route_and_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app's real routes and socket handlers, listed in-process, against the rows."""
    from chat_bootstrap.container import build_container
    from chat_bootstrap.settings import Settings
    from chat_server.app import create_quart_app
    from chat_server.realtime import register_socket_handlers

    monkeypatch.chdir(tmp_path)
    # Building a server sets its JSON codec class-wide (engine.io and socket.io packets):
    # undo that afterwards, or this process's test clients would encode with orjson.
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
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in {"HEAD", "OPTIONS"}
        # The server API takes API keys, not users' tokens: its own matrix covers it
        # (tests/e2e/test_server_api.py).
        and not rule.rule.startswith("/api/v1/server/")
    }
    assert routes == {(r.method, r.rule) for r in REST_ROWS}, "every route needs a row"

    sio = container.socketio_server()
    register_socket_handlers(sio, container)
    events = set(sio.namespace_handlers["/"].EVENTS) - LIFECYCLE_HANDLERS
    assert events == set(SOCKET_PAYLOADS), "every client event needs a row"


async def test_a_removed_member_loses_access_at_once(api: Api, people: People) -> None:
    owner, member = people.owner, people.member
    room = await api.create_room(owner, member, name="eviction")
    o = await Socket(api.base_url, owner.token).connect()
    m = await Socket(api.base_url, member.token).connect()
    try:
        assert (await m.call("sync", {"room_id": room["id"], "after_seq": 0}))["ok"] is True
        r = await api.http.delete(
            f"/api/v1/rooms/{room['id']}/members/{member.id}", headers=owner.headers
        )
        assert r.status_code == 204
        await m.wait_for("room:member_removed", lambda e: e["room_id"] == room["id"])

        # REST: every room call now answers as for a room that does not exist.
        for method, path, body in (
            ("GET", f"/api/v1/rooms/{room['id']}", None),
            ("GET", f"/api/v1/rooms/{room['id']}/messages", None),
            ("POST", f"/api/v1/rooms/{room['id']}/messages", {"body": "still here?"}),
            ("GET", f"/api/v1/rooms/{room['id']}/receipts", None),
            ("POST", f"/api/v1/rooms/{room['id']}/read", {"seq": 0}),
        ):
            r = await api.http.request(method, path, json=body, headers=member.headers)
            assert r.status_code == 404, (method, path, r.text)
        # Sockets: the same connection, already open, is refused from now on.
        for event, payload in SOCKET_PAYLOADS.items():
            ack = await m.call(event, payload(room["id"]))
            assert ack["ok"] is False and ack["error"]["code"] == "not_found", (event, ack)

        # ... and it hears nothing more of the room.
        r = await api.send(owner, room["id"], "after the eviction")
        sent = r.json()["message"]["id"]
        await o.wait_for("message:new", lambda e: e["id"] == sent)
        # A round trip on the member's socket: anything emitted to it before is in by now.
        await m.call("sync", {"room_id": room["id"], "after_seq": 0})
        assert all(e["id"] != sent for e in m.events["message:new"])
        listed = (await api.http.get("/api/v1/rooms", headers=member.headers)).json()["rooms"]
        assert room["id"] not in {x["id"] for x in listed}
    finally:
        await o.disconnect()
        await m.disconnect()


def test_matrix_size() -> None:
    """The size reported for the matrix: rows x identities."""
    assert len(REST_ROWS) * len(IDENTITIES) == 28 * 9
    assert len(SOCKET_ROWS) * len(IDENTITIES) == 6 * 9
