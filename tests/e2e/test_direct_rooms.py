"""Direct rooms on a real embedded `chat serve`: one room per pair, whoever opens it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tests.support.clients import Account, Api, Socket

# The e2e conftest's `open_socket` fixture: connect a socket as a user.
OpenSocket = Callable[[Account], Awaitable[Socket]]


def open_direct(api: Api, who: Account, *member_ids: str) -> Any:
    return api.http.post(
        "/api/v1/rooms",
        json={"kind": "direct", "member_ids": list(member_ids)},
        headers=who.headers,
    )


def members_of(r: httpx.Response) -> dict[str, str]:
    return {m["user_id"]: m["role"] for m in r.json()["room"]["members"]}


async def test_one_room_per_pair_in_either_direction(api: Api, open_socket: OpenSocket) -> None:
    alice, bob = await api.signup(), await api.signup()
    b = await open_socket(bob)
    first = await open_direct(api, alice, bob.id)
    assert first.status_code == 201, first.text
    room = first.json()["room"]
    assert room["kind"] == "direct" and room["last_seq"] == 0
    assert members_of(first) == {alice.id: "member", bob.id: "member"}  # no owner among equals
    await b.wait_for("room:member_added", lambda e: e == {"room_id": room["id"], "user_id": bob.id})

    again = await open_direct(api, alice, bob.id)
    reverse = await open_direct(api, bob, alice.id)
    # Naming yourself too is the same pair.
    with_self = await open_direct(api, bob, alice.id, bob.id)
    for r in (again, reverse, with_self):
        assert r.status_code == 200, r.text
        assert r.json()["room"]["id"] == room["id"] and members_of(r) == members_of(first)
    # Re-opening announces nothing new.
    assert len(b.events["room:member_added"]) == 1

    # It is a room like any other for messages and lists.
    sent = await api.send(bob, room["id"], "psst")
    assert sent.status_code == 202
    a = await open_socket(alice)
    ack = await a.call("sync", {"room_id": room["id"], "after_seq": 0})
    assert [m["body"] for m in ack["messages"]] == ["psst"]
    listed = (await api.http.get("/api/v1/rooms", headers=alice.headers)).json()["rooms"]
    assert [(x["id"], x["kind"], x["unread_count"]) for x in listed] == [(room["id"], "direct", 1)]


async def test_a_pair_opening_at_once_gets_one_room(api: Api) -> None:
    alice, bob = await api.signup(), await api.signup()
    answers = await asyncio.gather(
        *(open_direct(api, who, other.id) for who, other in [(alice, bob), (bob, alice)] * 3)
    )
    assert sorted(r.status_code for r in answers) == [200] * 5 + [201], [r.text for r in answers]
    assert len({r.json()["room"]["id"] for r in answers}) == 1


async def test_who_can_be_in_a_direct_room(api: Api) -> None:
    alice, bob, carol = await api.signup(), await api.signup(), await api.signup()
    for member_ids in ([alice.id], [], [bob.id, carol.id], ["no-such-user"]):
        r = await open_direct(api, alice, *member_ids)
        assert r.status_code == 422, (member_ids, r.text)
        assert r.json()["error"]["code"] == "validation_error"

    room_id = (await open_direct(api, alice, bob.id)).json()["room"]["id"]
    r = await api.http.post(
        f"/api/v1/rooms/{room_id}/members", json={"user_id": carol.id}, headers=alice.headers
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = await api.http.get(f"/api/v1/rooms/{room_id}", headers=carol.headers)
    assert r.status_code == 404
    # A third user's own pair with alice is a different room.
    other = await open_direct(api, carol, alice.id)
    assert other.status_code == 201 and other.json()["room"]["id"] != room_id


async def test_a_room_the_other_left_is_not_reopened_over_them(
    api: Api, open_socket: OpenSocket
) -> None:
    alice, bob = await api.signup(), await api.signup()
    room_id = (await open_direct(api, alice, bob.id)).json()["room"]["id"]
    a = await open_socket(alice)
    assert (await api.send(alice, room_id, "before")).status_code == 202
    await a.wait_for("message:new", lambda m: m["room_id"] == room_id)
    r = await api.http.delete(f"/api/v1/rooms/{room_id}/members/{bob.id}", headers=bob.headers)
    assert r.status_code == 204
    assert (await api.http.get(f"/api/v1/rooms/{room_id}", headers=bob.headers)).status_code == 404

    # Alice gets the pair's one room back, without bob: he left, nobody brings him back.
    b = await open_socket(bob)
    back = await open_direct(api, alice, bob.id)
    assert back.status_code == 200 and back.json()["room"]["id"] == room_id
    assert set(members_of(back)) == {alice.id}
    sent = await api.send(alice, room_id, "while bob is away")
    await a.wait_for("message:new", lambda m: m["id"] == sent.json()["message"]["id"])
    assert (await api.http.get("/api/v1/rooms", headers=bob.headers)).json()["rooms"] == []
    assert (await api.http.get(f"/api/v1/rooms/{room_id}", headers=bob.headers)).status_code == 404
    # A round trip on bob's socket: anything emitted to it before is in by now.
    await b.call("sync", {"room_id": room_id, "after_seq": 0})
    assert b.events["room:member_added"] == [] and b.events["message:new"] == []

    # Bob comes back by opening it himself, history included.
    again = await open_direct(api, bob, alice.id)
    assert again.status_code == 200 and set(members_of(again)) == {alice.id, bob.id}
    await b.wait_for("room:member_added", lambda e: e == {"room_id": room_id, "user_id": bob.id})
    page = await api.history(bob, room_id)
    assert [m["body"] for m in page["messages"]] == ["before", "while bob is away"]
