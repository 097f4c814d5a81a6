"""The core of the contract on a real embedded `chat serve`: two users, a room, live messages."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
import socketio

from tests.support.clients import Api
from tests.support.processes import ChatProcess


async def test_rest_send_reaches_both_members_live(api: Api, open_socket) -> None:  # type: ignore[no-untyped-def]
    alice, bob = await api.signup("alice"), await api.signup("bob")
    room = await api.create_room(alice, bob, name="Lunch")
    a, b = await open_socket(alice), await open_socket(bob)

    r = await api.send(alice, room["id"], "  hello bob  ")
    assert r.status_code == 202
    accepted = r.json()["message"]
    assert accepted["status"] == "accepted" and accepted["seq"] is None
    assert accepted["body"] == "hello bob" and accepted["sender_id"] == alice.id

    for s in (a, b):
        [got] = await s.wait_for("message:new", lambda m: m["id"] == accepted["id"])
        assert got["seq"] == 1 and got["room_id"] == room["id"] and got["body"] == "hello bob"

    page = await api.history(bob, room["id"])
    assert [m["id"] for m in page["messages"]] == [accepted["id"]]
    assert page["messages"][0]["seq"] == 1 and page["has_more"] is False


async def test_seq_is_gapless_and_in_order(api: Api, open_socket) -> None:  # type: ignore[no-untyped-def]
    alice, bob = await api.signup(), await api.signup()
    room = await api.create_room(alice, bob)
    b = await open_socket(bob)
    answers = await asyncio.gather(*(api.send(alice, room["id"], f"m{i}") for i in range(30)))
    assert {r.status_code for r in answers} == {202}
    await b.wait_for("message:new", lambda m: m["room_id"] == room["id"], count=30)
    stored = await api.all_messages(bob, room["id"])
    assert [m["seq"] for m in stored] == list(range(1, 31))
    assert sorted(m["body"] for m in stored) == sorted(f"m{i}" for i in range(30))


async def test_idempotent_retry_answers_the_same_id_and_stores_once(api: Api, open_socket) -> None:  # type: ignore[no-untyped-def]
    alice, bob = await api.signup(), await api.signup()
    room = await api.create_room(alice, bob)
    b = await open_socket(bob)
    key = str(uuid.uuid4())
    first = await api.send(alice, room["id"], "once", client_msg_id=key)
    second = await api.send(alice, room["id"], "once", client_msg_id=key)
    assert first.status_code == second.status_code == 202
    message_id = first.json()["message"]["id"]
    assert second.json()["message"]["id"] == message_id
    await b.wait_for("message:new", lambda m: m["id"] == message_id)
    # After storage a retry still answers the same id, now with its seq.
    third = await api.send(alice, room["id"], "once", client_msg_id=key)
    assert third.status_code == 202 and third.json()["message"]["id"] == message_id
    assert third.json()["message"]["seq"] == 1
    stored = await api.all_messages(alice, room["id"])
    assert [m["id"] for m in stored] == [message_id]
    assert stored[0]["client_msg_id"] == key


async def test_socket_send_goes_through_the_same_path(api: Api, open_socket) -> None:  # type: ignore[no-untyped-def]
    alice, bob = await api.signup(), await api.signup()
    room = await api.create_room(alice, bob)
    a, b = await open_socket(alice), await open_socket(bob)
    ack = await a.call(
        "message:send", {"room_id": room["id"], "body": "via socket", "client_msg_id": "k1"}
    )
    assert ack["ok"] is True and ack["message"]["status"] == "accepted"
    [got] = await b.wait_for("message:new", lambda m: m["id"] == ack["message"]["id"])
    assert got["body"] == "via socket" and got["seq"] == 1 and got["client_msg_id"] == "k1"

    bad = await a.call("message:send", {"room_id": room["id"], "body": "   "})
    assert bad["ok"] is False and bad["error"]["code"] == "validation_error"
    stranger = await api.signup()
    s = await open_socket(stranger)
    denied = await s.call("message:send", {"room_id": room["id"], "body": "let me in"})
    assert denied == {"ok": False, "error": {"code": "not_found", "message": "room not found"}}
    assert [m["seq"] for m in await api.all_messages(alice, room["id"])] == [1]


async def test_sync_returns_what_was_missed(api: Api, open_socket) -> None:  # type: ignore[no-untyped-def]
    alice, bob = await api.signup(), await api.signup()
    room = await api.create_room(alice, bob)
    a = await open_socket(alice)
    for i in range(5):
        assert (await api.send(alice, room["id"], f"m{i}")).status_code == 202
    await a.wait_for("message:new", lambda m: m["room_id"] == room["id"], count=5)
    b = await open_socket(bob)
    ack = await b.call("sync", {"room_id": room["id"], "after_seq": 2})
    assert ack["ok"] is True and ack["has_more"] is False
    assert [m["seq"] for m in ack["messages"]] == [3, 4, 5]


async def test_socket_refuses_a_missing_or_bad_token(server: ChatProcess) -> None:
    for auth in (None, {"token": "not-a-token"}, {"nope": 1}, {"token": 42}):
        client = socketio.AsyncClient(reconnection=False)
        errors: asyncio.Queue[object] = asyncio.Queue()
        client.on("connect_error", errors.put_nowait)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(server.url, auth=auth, transports=["websocket"], wait_timeout=5)
        refusal = await asyncio.wait_for(errors.get(), 5)
        assert refusal == {"message": "unauthorized"}
        await client.disconnect()


async def test_history_cursors(api: Api, open_socket) -> None:  # type: ignore[no-untyped-def]
    alice = await api.signup()
    room = await api.create_room(alice)
    a = await open_socket(alice)
    for i in range(7):
        await api.send(alice, room["id"], f"m{i}")
    await a.wait_for("message:new", lambda m: m["room_id"] == room["id"], count=7)
    newest = await api.history(alice, room["id"], limit=3)
    assert [m["seq"] for m in newest["messages"]] == [5, 6, 7] and newest["has_more"] is True
    older = await api.history(alice, room["id"], before_seq=5, limit=3)
    assert [m["seq"] for m in older["messages"]] == [2, 3, 4] and older["has_more"] is True
    oldest = await api.history(alice, room["id"], before_seq=2)
    assert [m["seq"] for m in oldest["messages"]] == [1] and oldest["has_more"] is False
    after = await api.history(alice, room["id"], after_seq=4, limit=2)
    assert [m["seq"] for m in after["messages"]] == [5, 6] and after["has_more"] is True
    tail = await api.history(alice, room["id"], after_seq=6)
    assert [m["seq"] for m in tail["messages"]] == [7] and tail["has_more"] is False


async def test_rooms_list_members_and_unread(api: Api, open_socket) -> None:  # type: ignore[no-untyped-def]
    alice, bob, carol = await api.signup(), await api.signup(), await api.signup()
    older = await api.create_room(alice, bob, name="older")
    newer = await api.create_room(alice, name="newer")
    b = await open_socket(bob)
    await api.send(alice, older["id"], "hi")
    await api.send(alice, older["id"], "there")
    await b.wait_for("message:new", lambda m: m["room_id"] == older["id"], count=2)

    r = await api.http.get("/api/v1/rooms", headers=bob.headers)
    assert r.status_code == 200
    [listed] = r.json()["rooms"]
    assert listed["id"] == older["id"] and listed["unread_count"] == 2
    assert listed["last_message"]["body"] == "there" and listed["last_seq"] == 2

    r = await api.http.get("/api/v1/rooms", headers=alice.headers)
    rooms = r.json()["rooms"]
    assert [x["id"] for x in rooms] == [older["id"], newer["id"]]  # most recent activity first
    assert rooms[0]["unread_count"] == 0 and rooms[1]["last_message"] is None

    r = await api.http.post(
        f"/api/v1/rooms/{newer['id']}/members", json={"user_id": carol.id}, headers=alice.headers
    )
    assert r.status_code == 201 and r.json()["member"]["user_id"] == carol.id
    assert r.json()["member"]["role"] == "member"
    again = await api.http.post(
        f"/api/v1/rooms/{newer['id']}/members", json={"user_id": carol.id}, headers=alice.headers
    )
    assert again.status_code == 200
    r = await api.http.get(f"/api/v1/rooms/{newer['id']}", headers=carol.headers)
    members = {m["user_id"]: m["role"] for m in r.json()["room"]["members"]}
    assert members == {alice.id: "owner", carol.id: "member"}

    # Carol may leave; she may not remove the owner; removed, she no longer sees the room.
    assert (
        await api.http.delete(
            f"/api/v1/rooms/{newer['id']}/members/{alice.id}", headers=carol.headers
        )
    ).status_code == 403
    assert (
        await api.http.delete(
            f"/api/v1/rooms/{newer['id']}/members/{carol.id}", headers=carol.headers
        )
    ).status_code == 204
    assert (
        await api.http.get(f"/api/v1/rooms/{newer['id']}", headers=carol.headers)
    ).status_code == 404


async def test_users_me_and_search(api: Api) -> None:
    alice = await api.signup("searchable")
    r = await api.http.get("/api/v1/users/me", headers=alice.headers)
    assert r.status_code == 200 and r.json()["user"]["username"] == alice.username
    assert set(r.json()["user"]) == {"id", "username", "display_name", "created_at"}
    r = await api.http.get(
        "/api/v1/users", params={"q": alice.username[:14]}, headers=alice.headers
    )
    assert [u["id"] for u in r.json()["users"]] == [alice.id]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("get", "/api/v1/nowhere", {}, 404, "not_found"),
        ("delete", "/api/v1/auth/login", {}, 405, None),
        ("post", "/api/v1/auth/register", {"content": b"{not json"}, 400, "validation_error"),
        ("post", "/api/v1/auth/register", {"json": {"username": "x"}}, 422, "validation_error"),
        (
            "post",
            "/api/v1/auth/register",
            {"json": {"username": "ok_name", "password": 12345678}},
            422,
            "validation_error",
        ),
        (
            "post",
            "/api/v1/auth/register",
            {"json": {"username": "bad name!", "password": "long enough"}},
            422,
            "validation_error",
        ),
        (
            "post",
            "/api/v1/auth/register",
            {"content": b'{"username": "' + b"a" * 70000 + b'"}'},
            413,
            "payload_too_large",
        ),
        (
            "post",
            "/api/v1/auth/login",
            {"json": {"username": "nobody_here", "password": "whatever1"}},
            401,
            "unauthorized",
        ),
        ("get", "/api/v1/users/me", {}, 401, "unauthorized"),
        (
            "get",
            "/api/v1/users/me",
            {"headers": {"Authorization": "Bearer garbage"}},
            401,
            "unauthorized",
        ),
        ("get", "/api/v1/rooms", {"headers": {"Authorization": "Basic abc"}}, 401, "unauthorized"),
    ],
)
async def test_bad_input_gets_the_error_shape(
    api: Api, method: str, path: str, kwargs: dict, status: int, code: str | None
) -> None:  # type: ignore[type-arg]
    r = await getattr(api.http, method)(path, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and isinstance(body["error"]["message"], str)
    if code:
        assert body["error"]["code"] == code
    # ... and the process keeps serving.
    assert (await api.http.get("/healthz")).json() == {"status": "ok"}


async def test_member_only_errors(api: Api) -> None:
    alice, mallory = await api.signup(), await api.signup()
    room = await api.create_room(alice)
    for call in (
        api.http.get(f"/api/v1/rooms/{room['id']}", headers=mallory.headers),
        api.http.get(f"/api/v1/rooms/{room['id']}/messages", headers=mallory.headers),
        api.http.post(
            f"/api/v1/rooms/{room['id']}/messages", json={"body": "hi"}, headers=mallory.headers
        ),
        api.http.get(f"/api/v1/rooms/{uuid.uuid4()}", headers=mallory.headers),
    ):
        r = await call
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    dup = await api.http.post(
        "/api/v1/auth/register", json={"username": alice.username.upper(), "password": "whatever12"}
    )
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "conflict"
    empty = await api.send(alice, room["id"], " \n ")
    assert empty.status_code == 422 and empty.json()["error"]["message"].startswith("body")
    too_long = await api.send(alice, room["id"], "x" * 4001)
    assert too_long.status_code == 422
    bad_limit = await api.http.get(
        f"/api/v1/rooms/{room['id']}/messages", params={"limit": 201}, headers=alice.headers
    )
    assert bad_limit.status_code == 422
    assert (await api.history(alice, room["id"]))["messages"] == []


def test_healthz_is_plain(server: ChatProcess) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
