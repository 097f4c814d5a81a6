"""The text rules (chat_domain.text) end to end, on SQLite and on PostgreSQL storage.

PostgreSQL cannot hold U+0000 where SQLite can: a NUL body used to answer 202 and then
never be stored, and a NUL anywhere else (login, names, search, path ids) answered 500.
Whatever the storage, refused text answers a JSON validation error (or the answer an
unknown thing gets), nothing is accepted, and accepted text comes back as it was sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import STORAGES, served_on
from tests.support.clients import Account, Api
from tests.support.processes import ChatProcess
from tests.support.text_corpus import ACCEPTED_BODIES, LONGEST_DISPLAY_NAME, LONGEST_ROOM_NAME

PASSWORD = "correct horse battery"
NUL_BODIES = ["x\x00y", "\x00", "a\x1b[31mred", "abc\u202edcba", "\u200b\u200c"]


@pytest.fixture(scope="module", params=STORAGES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChatProcess]:
    yield from served_on(request.param, tmp_path_factory)


def is_error(r: httpx.Response, status: int, code: str) -> bool:
    body: Any = r.json()
    return (
        r.status_code == status
        and r.headers["content-type"].startswith("application/json")
        and body["error"]["code"] == code
        and isinstance(body["error"]["message"], str)
        and "Traceback" not in r.text
    )


async def metric(api: Api, name: str) -> float:
    text = (await api.http.get("/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


async def test_a_body_with_nul_or_a_control_is_refused_everywhere_and_nothing_is_accepted(
    api: Api, open_socket
) -> None:  # type: ignore[no-untyped-def]
    alice, bob = await api.signup("alice"), await api.signup("bob")
    room = await api.create_room(alice, bob)
    bob_socket, alice_socket = await open_socket(bob), await open_socket(alice)
    accepted_before = await metric(api, "chat_messages_accepted_total")
    quart_way = {**alice.headers, "Origin": api.base_url}  # not the fast send lane

    for body in NUL_BODIES:
        for headers in (alice.headers, quart_way):
            r = await api.http.post(
                f"/api/v1/rooms/{room['id']}/messages", json={"body": body}, headers=headers
            )
            assert is_error(r, 422, "validation_error"), (body, r.status_code, r.text)
            assert "\x00" not in r.json()["error"]["message"]
        ack = await alice_socket.call("message:send", {"room_id": room["id"], "body": body})
        assert ack["ok"] is False and ack["error"]["code"] == "validation_error", (body, ack)
    # A lone surrogate is valid JSON ("\\ud800") but not text: REST's parser refuses the
    # JSON (400), the socket's reads it and the domain refuses it; neither goes unanswered.
    r = await api.http.post(
        f"/api/v1/rooms/{room['id']}/messages",
        content=b'{"body": "a\\ud800b"}',
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert is_error(r, 400, "validation_error"), r.text
    ack = await alice_socket.call("message:send", {"room_id": room["id"], "body": "a\ud800b"})
    assert ack["ok"] is False and ack["error"]["code"] == "validation_error", ack
    # A client_msg_id is part of a message's id: the same rules.
    r = await api.send(alice, room["id"], "fine", client_msg_id="k\x00")
    assert is_error(r, 422, "validation_error"), r.text
    assert await metric(api, "chat_messages_accepted_total") == accepted_before

    # The next good message is the room's first: nothing refused took a seq or is stuck.
    r = await api.send(alice, room["id"], "after the refusals")
    assert r.status_code == 202, r.text
    [got] = await bob_socket.wait_for("message:new", timeout=15)
    assert (got["body"], got["seq"]) == ("after the refusals", 1)

    # An edit follows the body's rules too.
    r = await api.http.patch(
        f"/api/v1/rooms/{room['id']}/messages/{got['id']}",
        json={"body": "x\x00y"},
        headers=alice.headers,
    )
    assert is_error(r, 422, "validation_error"), r.text
    assert [m["body"] for m in await api.all_messages(bob, room["id"])] == ["after the refusals"]
    assert await metric(api, "chat_messages_store_failures_total") == 0


async def test_login_with_nul_in_the_username_is_401_like_an_unknown_user(api: Api) -> None:
    alice = await api.signup("alice")
    for username in (f"{alice.username}\x00", "a\x00b", "\x00", "\u202eeve"):
        r = await api.http.post(
            "/api/v1/auth/login", json={"username": username, "password": PASSWORD}
        )
        assert is_error(r, 401, "unauthorized"), (username, r.status_code, r.text)
        assert r.json()["error"]["message"] == "invalid username or password"


async def test_nul_in_a_search_or_a_path_gets_a_clean_json_error(api: Api, open_socket) -> None:  # type: ignore[no-untyped-def]
    alice, bob = await api.signup("alice"), await api.signup("bob")
    room = await api.create_room(alice, bob)
    r = await api.send(alice, room["id"], "hi")
    message_id = r.json()["message"]["id"]
    h = alice.headers

    r = await api.http.get("/api/v1/users?q=a%00", headers=h)
    assert is_error(r, 422, "validation_error"), r.text
    r = await api.http.get("/api/v1/users", params={"q": "\u00e9"}, headers=h)
    assert r.status_code == 200 and r.json() == {"users": []}, r.text

    not_found = [
        ("GET", "/api/v1/rooms/a%00b", None),
        ("GET", "/api/v1/rooms/a%00b/messages", None),
        ("GET", "/api/v1/rooms/a%00b/receipts", None),
        ("POST", "/api/v1/rooms/a%00b/messages", {"body": "hi"}),
        ("POST", "/api/v1/rooms/a%00b/read", {"seq": 1}),
        ("POST", "/api/v1/rooms/a%E2%80%AEb/members", {"user_id": bob.id}),
        ("POST", f"/api/v1/rooms/{room['id']}/members", {"user_id": "a\x00b"}),
        ("DELETE", f"/api/v1/rooms/{room['id']}/members/a%00b", None),
        ("PATCH", f"/api/v1/rooms/{room['id']}/messages/a%00b", {"body": "x"}),
        ("DELETE", f"/api/v1/rooms/{room['id']}/messages/a%00b", None),
        ("DELETE", f"/api/v1/rooms/a%00b/messages/{message_id}", None),
    ]
    for method, path, body in not_found:
        r = await api.http.request(method, path, json=body, headers=h)
        assert is_error(r, 404, "not_found"), (method, path, r.status_code, r.text)
    for payload in (
        {"name": "r", "member_ids": ["a\x00b"]},
        {"kind": "direct", "member_ids": ["a\x00b"]},
    ):
        r = await api.http.post("/api/v1/rooms", json=payload, headers=h)
        assert is_error(r, 422, "validation_error"), (payload, r.text)

    s = await open_socket(alice)
    for event, payload in (
        ("message:send", {"room_id": "a\x00b", "body": "hi"}),
        ("typing", {"room_id": "a\x00b", "is_typing": True}),
        ("read", {"room_id": "a\x00b", "seq": 1}),
        ("sync", {"room_id": "a\x00b", "after_seq": 0}),
    ):
        ack = await s.call(event, payload)
        assert ack == {"ok": False, "error": ack["error"]}, (event, ack)
        assert ack["error"]["code"] == "not_found", (event, ack)


async def register(api: Api, username: str, display_name: str) -> httpx.Response:
    return await api.http.post(
        "/api/v1/auth/register",
        json={"username": username, "password": PASSWORD, "display_name": display_name},
    )


async def test_names_with_controls_or_nothing_visible_are_refused(api: Api) -> None:
    alice = await api.signup("alice")
    for name in ("a\x00b", "abc\u202edcba", "\u200b", "\u3164", "a\nb"):
        r = await register(api, "mallory_names", name)
        assert is_error(r, 422, "validation_error"), (name, r.text)
        r = await api.http.post("/api/v1/rooms", json={"name": name}, headers=alice.headers)
        assert is_error(r, 422, "validation_error"), (name, r.text)
    r = await api.http.post(
        "/api/v1/auth/login", json={"username": "mallory_names", "password": PASSWORD}
    )
    assert r.status_code == 401  # none of the refused registrations created the account


async def test_a_display_name_that_passes_for_another_users_username_is_refused(
    api: Api,
) -> None:
    victim = await api.signup("victim")
    lookalikes = [
        victim.username,
        victim.username.upper(),
        f"@{victim.username}",
        "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in victim.username),  # fullwidth
        victim.username.replace("i", "\u0456"),  # Cyrillic i
    ]
    for n, name in enumerate(lookalikes):
        r = await register(api, f"mallory_{n}", name)
        assert is_error(r, 422, "validation_error"), (name, r.text)
        assert "another user" in r.json()["error"]["message"]
    r = await register(api, "mallory_ok", "Not The Victim")
    assert r.status_code == 201, r.text


async def test_accepted_text_comes_back_exactly_as_sent(api: Api, open_socket) -> None:  # type: ignore[no-untyped-def]
    r = await register(api, "corpus_user", LONGEST_DISPLAY_NAME)
    assert r.status_code == 201, r.text
    assert r.json()["user"]["display_name"] == LONGEST_DISPLAY_NAME
    r = await api.http.post(
        "/api/v1/auth/login", json={"username": "corpus_user", "password": PASSWORD}
    )
    me = Account(r.json()["user"]["id"], "corpus_user", r.json()["access_token"])
    r = await api.http.post("/api/v1/rooms", json={"name": LONGEST_ROOM_NAME}, headers=me.headers)
    assert r.status_code == 201, r.text
    room = r.json()["room"]
    assert room["name"] == LONGEST_ROOM_NAME

    bodies = list(ACCEPTED_BODIES.values())
    s = await open_socket(me)
    for n, body in enumerate(bodies):
        if n % 2:
            ack = await s.call("message:send", {"room_id": room["id"], "body": body})
            assert ack["ok"], ack
        else:
            r = await api.send(me, room["id"], body)
            assert r.status_code == 202, r.text
    await s.wait_for("message:new", count=len(bodies), timeout=20)
    stored = await api.all_messages(me, room["id"])
    assert [m["body"] for m in stored] == bodies
