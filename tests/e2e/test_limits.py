"""Limits on everything a client controls, on a server started with small limits.

Each limit is a setting; each refusal is the contract's error (or a connect_error /
an ack error on socket.io), never a crash: the server keeps serving everyone else.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import socketio

from tests.support.clients import Account, Api, Socket
from tests.support.processes import ChatProcess, chat_serve

PASSWORD = "correct horse battery"
LIMITS = {
    "CHAT_MAX_BODY_BYTES": "4096",
    "CHAT_SOCKETIO_MAX_PACKET_BYTES": "16384",
    "CHAT_MAX_SOCKETS_PER_USER": "2",
    "CHAT_MAX_MEMBERS_PER_ROOM": "3",
    "CHAT_MAX_ROOMS_PER_USER": "3",
    # A bucket refills so slowly that no test here sees a token come back.
    "CHAT_RATE_SEND_PER_SECOND": "0.01",
    "CHAT_RATE_SEND_BURST": "3",
    "CHAT_RATE_LOGIN_PER_MINUTE": "0.1",
    "CHAT_RATE_LOGIN_BURST": "3",
    "CHAT_RATE_AUTH_PER_ADDRESS_PER_MINUTE": "0.1",
    "CHAT_RATE_AUTH_PER_ADDRESS_BURST": "6",
    "CHAT_RATE_CONNECT_PER_MINUTE": "0.1",
    "CHAT_RATE_CONNECT_BURST": "5",
    "CHAT_RATE_TYPING_PER_SECOND": "0.01",
    "CHAT_RATE_TYPING_BURST": "3",
    "CHAT_RATE_RECEIPT_PER_SECOND": "0.01",
    "CHAT_RATE_RECEIPT_BURST": "3",
    # The test plays the proxy: X-Forwarded-For names the client, so each test user can
    # come from its own address and the per-address budget is testable.
    "CHAT_TRUSTED_PROXY_HOPS": "1",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatProcess]:
    process = chat_serve(tmp_path_factory.mktemp("limits"), LIMITS).start()
    yield process
    assert process.stop() == 0, process.log()


def new_address() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


async def signup(api: Api, display_name: str | None = None) -> Account:
    """Register and log in from an address of its own (the per-address budget is small)."""
    headers = {"X-Forwarded-For": new_address()}
    username = f"lim_{uuid.uuid4().hex[:10]}"
    creds = {"username": username, "password": PASSWORD}
    r = await api.http.post("/api/v1/auth/register", json=creds, headers=headers)
    assert r.status_code == 201, r.text
    r = await api.http.post("/api/v1/auth/login", json=creds, headers=headers)
    assert r.status_code == 200, r.text
    return Account(r.json()["user"]["id"], username, r.json()["access_token"])


def assert_error(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and "Traceback" not in r.text
    return body


async def refusal(url: str, token: str, headers: dict[str, str] | None = None) -> Any:
    client = socketio.AsyncClient(reconnection=False)
    errors: asyncio.Queue[Any] = asyncio.Queue()
    client.on("connect_error", errors.put_nowait)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(
            url,
            auth={"token": token},
            headers=headers or {},
            transports=["websocket"],
            wait_timeout=5,
        )
    await client.disconnect()
    return await asyncio.wait_for(errors.get(), 5)


# --- rate limits -----------------------------------------------------------------------


async def test_sends_share_one_budget_over_rest_and_socket(api: Api) -> None:
    alice = await signup(api)
    room = await api.create_room(alice)
    s = await Socket(api.base_url, alice.token).connect()
    try:
        assert [(await api.send(alice, room["id"], f"m{i}")).status_code for i in range(2)] == [
            202,
            202,
        ]
        assert (await s.call("message:send", {"room_id": room["id"], "body": "m2"}))["ok"] is True
        # The budget of 3 is spent, whichever way the next one comes.
        r = await api.send(alice, room["id"], "one too many")
        body = assert_error(r, 429, "rate_limited")
        assert int(r.headers["Retry-After"]) >= 1
        assert body["error"]["details"][0]["retry_after"] > 0
        ack = await s.call("message:send", {"room_id": room["id"], "body": "one too many"})
        assert ack["ok"] is False and ack["error"]["code"] == "rate_limited"
    finally:
        await s.disconnect()
    # Nothing refused was stored; another user's budget is untouched.
    history = await api.history(alice, room["id"])
    assert sorted(m["body"] for m in history["messages"]) == ["m0", "m1", "m2"]
    bob = await signup(api)
    assert (await api.send(bob, (await api.create_room(bob))["id"], "hi")).status_code == 202


async def test_login_is_limited_per_username_and_address(api: Api) -> None:
    victim = await signup(api)
    guesser = {"X-Forwarded-For": new_address()}
    for _ in range(3):
        r = await api.http.post(
            "/api/v1/auth/login",
            json={"username": victim.username, "password": "wrong guess!"},
            headers=guesser,
        )
        assert_error(r, 401, "unauthorized")
    r = await api.http.post(
        "/api/v1/auth/login",
        json={"username": victim.username.upper(), "password": PASSWORD},  # same name, any case
        headers=guesser,
    )
    assert_error(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) >= 1
    # The guesses cost the owner nothing: from their own address they log in, and a
    # success clears their own typos (a budget of 3, yet 2 + 3 misses pass as 401).
    owner = {"X-Forwarded-For": new_address()}
    wrong = {"username": victim.username, "password": "my typo!"}
    right = {"username": victim.username, "password": PASSWORD}
    answers = []
    for creds in [wrong, wrong, right, wrong, wrong, wrong]:
        r = await api.http.post("/api/v1/auth/login", json=creds, headers=owner)
        answers.append(r.status_code)
    assert answers == [401, 401, 200, 401, 401, 401]


async def test_register_and_login_are_limited_per_address(api: Api) -> None:
    address = {"X-Forwarded-For": new_address()}
    answers = []
    for _ in range(7):
        creds = {"username": f"addr_{uuid.uuid4().hex[:10]}", "password": PASSWORD}
        answers.append(await api.http.post("/api/v1/auth/register", json=creds, headers=address))
    assert [r.status_code for r in answers] == [201] * 6 + [429]
    assert_error(answers[-1], 429, "rate_limited")
    r = await api.http.post(
        "/api/v1/auth/login", json={"username": "x_nobody", "password": PASSWORD}, headers=address
    )
    assert r.status_code == 401  # login has its own budget per address
    await signup(api)  # another address is not affected


async def test_socket_connects_are_limited_per_user(api: Api) -> None:
    carol = await signup(api)
    for _ in range(5):
        s = await Socket(api.base_url, carol.token).connect()
        await s.disconnect()
    refused = await refusal(api.base_url, carol.token)
    assert refused["message"] == "rate_limited" and refused["data"]["retry_after"] > 0
    # Other users connect as usual.
    other = await Socket(api.base_url, (await signup(api)).token).connect()
    await other.disconnect()


async def test_typing_and_receipts_are_limited_per_user(api: Api) -> None:
    alice, bob = await signup(api), await signup(api)
    room = await api.create_room(alice, bob)
    a = await Socket(api.base_url, alice.token).connect()
    b = await Socket(api.base_url, bob.token).connect()
    try:
        assert (await api.send(alice, room["id"], "m1")).status_code == 202
        await b.wait_for("message:new", lambda m: m["body"] == "m1")
        typing = {"room_id": room["id"], "is_typing": True}
        acks = [await a.call("typing", typing) for _ in range(6)]
        assert [ack["ok"] for ack in acks] == [True] * 3 + [False] * 3
        refused = acks[-1]["error"]
        assert refused["code"] == "rate_limited" and refused["details"][0]["retry_after"] > 0
        read = {"room_id": room["id"], "seq": 1}
        acks = [await b.call("read", read) for _ in range(3)]  # 1 receipt, 2 that move nothing
        assert [ack["ok"] for ack in acks] == [True] * 3
        assert (await b.call("delivered", read))["error"]["code"] == "rate_limited"
        # A message after the refusals reaches each socket after anything they emitted.
        assert (await api.send(alice, room["id"], "m2")).status_code == 202
        await b.wait_for("message:new", lambda m: m["body"] == "m2")
        await a.wait_for("message:new", lambda m: m["body"] == "m2")
        assert len([e for e in b.events["typing"] if e["is_typing"]]) == 3
        assert [(r["kind"], r["seq"]) for r in a.events["receipt"]] == [
            ("delivered", 1),
            ("read", 1),
        ]
    finally:
        await a.disconnect()
        await b.disconnect()


# --- limits on size and number ---------------------------------------------------------


async def test_sockets_per_user(api: Api) -> None:
    dave = await signup(api)
    first = await Socket(api.base_url, dave.token).connect()
    second = await Socket(api.base_url, dave.token).connect()
    refused = await refusal(api.base_url, dave.token)
    assert refused == {"message": "too_many_connections", "data": {"max": 2}}
    await first.disconnect()
    third = await Socket(api.base_url, dave.token).connect()  # a slot is free again
    assert (await third.call("sync", {"room_id": "nope", "after_seq": 0}))["error"][
        "code"
    ] == "not_found"
    await second.disconnect()
    await third.disconnect()


async def test_request_body_size(api: Api) -> None:
    alice = await signup(api)
    room = await api.create_room(alice)
    r = await api.http.post(
        f"/api/v1/rooms/{room['id']}/messages",
        content=b'{"body": "' + b"x" * 5000 + b'"}',
        headers=alice.headers,
    )
    assert_error(r, 413, "payload_too_large")
    # The refused body was never read: the server says so, and the client does not reuse
    # the connection (reusing it used to fail with "server disconnected").
    assert r.headers["Connection"] == "close"
    assert (await api.http.get("/healthz")).status_code == 200


async def test_message_length(api: Api) -> None:
    alice = await signup(api)
    room = await api.create_room(alice)
    assert_error(await api.send(alice, room["id"], "x" * 4001), 422, "validation_error")
    s = await Socket(api.base_url, alice.token).connect()
    try:
        ack = await s.call("message:send", {"room_id": room["id"], "body": "y" * 4001})
        assert ack["ok"] is False and ack["error"]["code"] == "validation_error"
        assert (await s.call("message:send", {"room_id": room["id"], "body": "z" * 4000}))[
            "ok"
        ] is True
    finally:
        await s.disconnect()


async def test_name_lengths(api: Api) -> None:
    alice = await signup(api)
    r = await api.http.post("/api/v1/rooms", json={"name": "n" * 101}, headers=alice.headers)
    assert_error(r, 422, "validation_error")
    for body in (
        {"username": "u" * 33, "password": PASSWORD},
        {"username": "ab", "password": PASSWORD},
        {"username": f"ok_{uuid.uuid4().hex[:8]}", "password": PASSWORD, "display_name": "d" * 65},
        {"username": f"ok_{uuid.uuid4().hex[:8]}", "password": "p" * 129},
    ):
        r = await api.http.post(
            "/api/v1/auth/register", json=body, headers={"X-Forwarded-For": new_address()}
        )
        assert_error(r, 422, "validation_error")


async def test_guessable_passwords_are_refused_at_registration(api: Api) -> None:
    username = f"pw_{uuid.uuid4().hex[:8]}"
    for password, says in (
        ("password", "too common"),
        (username, "must not contain the username"),
        (f"{username.upper()}!!", "must not contain the username"),
    ):
        r = await api.http.post(
            "/api/v1/auth/register",
            json={"username": username, "password": password},
            headers={"X-Forwarded-For": new_address()},
        )
        body = assert_error(r, 422, "validation_error")
        assert body["error"]["message"].startswith("password: ") and says in r.text
    r = await api.http.post(
        "/api/v1/auth/login",
        json={"username": username, "password": "password"},
        headers={"X-Forwarded-For": new_address()},
    )
    assert_error(r, 401, "unauthorized")  # none of them created the account


async def test_page_size(api: Api) -> None:
    alice = await signup(api)
    room = await api.create_room(alice)
    r = await api.http.get(
        f"/api/v1/rooms/{room['id']}/messages", params={"limit": 201}, headers=alice.headers
    )
    assert_error(r, 422, "validation_error")
    assert (await api.history(alice, room["id"], limit=200))["messages"] == []
    for cursor in ("after_seq", "before_seq"):  # past int64: refused, not a database error
        r = await api.http.get(
            f"/api/v1/rooms/{room['id']}/messages", params={cursor: 2**63}, headers=alice.headers
        )
        assert_error(r, 422, "validation_error")
    s = await Socket(api.base_url, alice.token).connect()
    try:
        ack = await s.call("sync", {"room_id": room["id"], "after_seq": 0, "limit": 201})
        assert ack["ok"] is False and ack["error"]["code"] == "validation_error"
    finally:
        await s.disconnect()


async def test_members_per_room(api: Api) -> None:
    owner, a, b, c = [await signup(api) for _ in range(4)]
    r = await api.http.post(
        "/api/v1/rooms",
        json={"name": "big", "member_ids": [a.id, b.id, c.id]},
        headers=owner.headers,
    )
    assert_error(r, 422, "validation_error")
    room = await api.create_room(owner, a, b)  # 3 members: the limit
    r = await api.http.post(
        f"/api/v1/rooms/{room['id']}/members", json={"user_id": c.id}, headers=owner.headers
    )
    assert_error(r, 422, "validation_error")
    members = (await api.http.get(f"/api/v1/rooms/{room['id']}", headers=owner.headers)).json()[
        "room"
    ]["members"]
    assert {m["user_id"] for m in members} == {owner.id, a.id, b.id}


async def test_rooms_per_user(api: Api) -> None:
    busy, friend = await signup(api), await signup(api)
    for i in range(3):
        await api.create_room(busy, name=f"r{i}")
    r = await api.http.post("/api/v1/rooms", json={"name": "one more"}, headers=busy.headers)
    assert_error(r, 422, "validation_error")
    r = await api.http.post(
        "/api/v1/rooms", json={"kind": "direct", "member_ids": [friend.id]}, headers=busy.headers
    )
    assert_error(r, 422, "validation_error")
    assert len((await api.http.get("/api/v1/rooms", headers=busy.headers)).json()["rooms"]) == 3


async def test_an_oversized_socket_packet_drops_only_that_socket(api: Api) -> None:
    alice, bob = await signup(api), await signup(api)
    room = await api.create_room(alice, bob)
    b = await Socket(api.base_url, bob.token).connect()
    big = socketio.AsyncClient(reconnection=False)
    gone = asyncio.Event()
    big.on("disconnect", lambda *_: gone.set())
    await big.connect(
        api.base_url, auth={"token": alice.token}, transports=["websocket"], wait_timeout=5
    )
    try:
        await big.emit("message:send", {"room_id": room["id"], "body": "x" * 20_000})
        await asyncio.wait_for(gone.wait(), 10)  # engine.io closes a client over the limit
        # Everyone else is served as before, and the oversized message was not stored.
        r = await api.send(bob, room["id"], "still here")
        assert r.status_code == 202
        await b.wait_for("message:new", lambda m: m["body"] == "still here")
        assert [m["body"] for m in (await api.history(bob, room["id"]))["messages"]] == [
            "still here"
        ]
    finally:
        await big.disconnect()
        await b.disconnect()
