"""Consent to membership on a real embedded `chat serve` (issue 26, findings 7 and 8):
removals the room remembers, blocks, and an owner who hands the room over to leave.
(A direct room the other user left: tests/e2e/test_direct_rooms.py.)"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tests.support.clients import Account, Api, Socket

OpenSocket = Callable[[Account], Awaitable[Socket]]


def add(api: Api, who: Account, room_id: str, user: Account) -> Awaitable[httpx.Response]:
    return api.http.post(
        f"/api/v1/rooms/{room_id}/members", json={"user_id": user.id}, headers=who.headers
    )


def leave_or_remove(
    api: Api, who: Account, room_id: str, user: Account
) -> Awaitable[httpx.Response]:
    return api.http.delete(f"/api/v1/rooms/{room_id}/members/{user.id}", headers=who.headers)


def block(api: Api, who: Account, user: Account) -> Awaitable[httpx.Response]:
    return api.http.post(f"/api/v1/users/{user.id}/block", headers=who.headers)


def error_code(r: httpx.Response) -> str:
    code: str = r.json()["error"]["code"]
    return code


async def flush(api: Api, who: Account, room_id: str, s: Socket) -> None:
    """Events emitted to ``s`` before this are in once its own message arrives."""
    r = await api.send(who, room_id, "flush")
    await s.wait_for("message:new", lambda m: m["id"] == r.json()["message"]["id"])


async def test_a_member_cannot_add_back_whom_the_owner_removed(api: Api) -> None:
    owner, member, evicted = await api.signup(), await api.signup(), await api.signup()
    room = await api.create_room(owner, member, evicted)
    assert (await api.send(owner, room["id"], "before the eviction")).status_code == 202
    assert (await leave_or_remove(api, owner, room["id"], evicted)).status_code == 204

    r = await add(api, member, room["id"], evicted)
    assert r.status_code == 403 and error_code(r) == "forbidden", r.text
    # Still out: the room and its history stay closed to them.
    r = await api.http.get(f"/api/v1/rooms/{room['id']}/messages", headers=evicted.headers)
    assert r.status_code == 404

    # The owner may take them back, as may anyone once they left by themselves.
    assert (await add(api, owner, room["id"], evicted)).status_code == 201
    assert (await leave_or_remove(api, evicted, room["id"], evicted)).status_code == 204
    assert (await add(api, member, room["id"], evicted)).status_code == 201


async def test_the_owner_hands_the_room_over_before_leaving(
    api: Api, open_socket: OpenSocket
) -> None:
    owner, heir = await api.signup(), await api.signup()
    room = await api.create_room(owner, heir)
    h = await open_socket(heir)

    r = await leave_or_remove(api, owner, room["id"], owner)
    assert r.status_code == 409 and error_code(r) == "conflict", r.text

    r = await api.http.post(
        f"/api/v1/rooms/{room['id']}/owner", json={"user_id": heir.id}, headers=heir.headers
    )
    assert r.status_code == 403  # only the owner hands it over
    r = await api.http.post(
        f"/api/v1/rooms/{room['id']}/owner", json={"user_id": heir.id}, headers=owner.headers
    )
    assert r.status_code == 200, r.text
    roles = {m["user_id"]: m["role"] for m in r.json()["room"]["members"]}
    assert roles == {owner.id: "member", heir.id: "owner"}
    await h.wait_for(
        "room:owner_changed",
        lambda e: e == {"room_id": room["id"], "user_id": heir.id, "previous_owner_id": owner.id},
    )

    assert (await leave_or_remove(api, owner, room["id"], owner)).status_code == 204
    # The last member may leave, owner or not.
    assert (await leave_or_remove(api, heir, room["id"], heir)).status_code == 204


async def test_a_blocked_user_cannot_put_the_blocker_in_a_room(api: Api) -> None:
    blocker, blocked, friend = await api.signup(), await api.signup(), await api.signup()
    r = await block(api, blocker, blocked)
    assert r.status_code == 201, r.text
    assert r.json()["block"]["user_id"] == blocked.id
    assert (await block(api, blocker, blocked)).status_code == 200  # again: the first stays
    r = await api.http.get("/api/v1/users/me/blocks", headers=blocker.headers)
    assert [(b["user_id"], b["username"]) for b in r.json()["blocks"]] == [
        (blocked.id, blocked.username)
    ]

    r = await api.http.post(
        "/api/v1/rooms",
        json={"kind": "direct", "member_ids": [blocker.id]},
        headers=blocked.headers,
    )
    assert r.status_code == 403 and error_code(r) == "forbidden", r.text
    r = await api.http.post(
        "/api/v1/rooms",
        json={"name": "trap", "member_ids": [friend.id, blocker.id]},
        headers=blocked.headers,
    )
    assert r.status_code == 403, r.text
    room = await api.create_room(blocked, friend)
    r = await add(api, blocked, room["id"], blocker)
    assert r.status_code == 403, r.text
    listed = (await api.http.get("/api/v1/rooms", headers=blocker.headers)).json()["rooms"]
    assert listed == []

    r = await api.http.delete(f"/api/v1/users/{blocked.id}/block", headers=blocker.headers)
    assert r.status_code == 204
    assert (await add(api, blocked, room["id"], blocker)).status_code == 201


async def test_blocking_checks_its_input(api: Api) -> None:
    alice = await api.signup()
    r = await api.http.post(f"/api/v1/users/{alice.id}/block", headers=alice.headers)
    assert r.status_code == 422 and error_code(r) == "validation_error"
    r = await api.http.post("/api/v1/users/no-such-user/block", headers=alice.headers)
    assert r.status_code == 404 and error_code(r) == "not_found"


def about(user_id: str) -> Callable[[Any], bool]:
    return lambda p: p["user_id"] == user_id


async def test_whoever_adds_a_blocker_does_not_get_their_presence(
    api: Api, open_socket: OpenSocket
) -> None:
    adder, blocker, friend = await api.signup(), await api.signup(), await api.signup()
    room = await api.create_room(adder, blocker, friend)  # the adder put the blocker here
    assert (await block(api, blocker, adder)).status_code == 201

    a = await open_socket(adder)
    f = await open_socket(friend)
    await a.wait_for("presence", about(friend.id))  # the adder sees presence, but ...
    b = await open_socket(blocker)
    await f.wait_for("presence", lambda p: p == {"user_id": blocker.id, "online": True})
    await b.disconnect()
    await f.wait_for("presence", lambda p: p == {"user_id": blocker.id, "online": False})
    await flush(api, friend, room["id"], a)
    assert not any(p["user_id"] == blocker.id for p in a.events["presence"])  # ... not theirs

    # Nor in the snapshot of who is online, on connect.
    b = await open_socket(blocker)
    await f.wait_for("presence", lambda p: p == {"user_id": blocker.id, "online": True}, count=2)
    a2 = await open_socket(adder)
    await a2.wait_for("presence", about(friend.id))
    await flush(api, friend, room["id"], a2)
    assert not any(p["user_id"] == blocker.id for p in a2.events["presence"])
    assert not any(p["user_id"] == blocker.id for p in a.events["presence"])
