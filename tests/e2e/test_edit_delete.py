"""Editing and deleting messages on a real embedded `chat serve`: who may, the live events,
and the tombstone that keeps ``seq`` without a gap."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tests.support.clients import Account, Api, Socket

# The e2e conftest's `open_socket` fixture: connect a socket as a user.
OpenSocket = Callable[[Account], Awaitable[Socket]]


async def stored(
    api: Api, who: Account, room_id: str, body: str, watcher: Socket
) -> dict[str, Any]:
    r = await api.send(who, room_id, body)
    assert r.status_code == 202, r.text
    message_id = r.json()["message"]["id"]
    [message] = await watcher.wait_for("message:new", lambda m: m["id"] == message_id)
    return dict(message)


def patch(api: Api, who: Account, room_id: str, message_id: str, body: Any) -> Any:
    return api.http.patch(
        f"/api/v1/rooms/{room_id}/messages/{message_id}", json={"body": body}, headers=who.headers
    )


def delete(api: Api, who: Account, room_id: str, message_id: str) -> Any:
    return api.http.delete(f"/api/v1/rooms/{room_id}/messages/{message_id}", headers=who.headers)


def error_code(r: httpx.Response) -> str:
    code: str = r.json()["error"]["code"]
    return code


async def test_sender_edits_and_every_member_sees_it(api: Api, open_socket: OpenSocket) -> None:
    alice, bob = await api.signup(), await api.signup()
    room_id = (await api.create_room(alice, bob))["id"]
    a, b = await open_socket(alice), await open_socket(bob)
    original = await stored(api, alice, room_id, "helo", b)
    assert original["edited_at"] is None

    r = await patch(api, alice, room_id, original["id"], "  hello  ")
    assert r.status_code == 200, r.text
    edited = r.json()["message"]
    assert edited["body"] == "hello" and edited["edited_at"] is not None
    assert edited["edited_at"] >= original["created_at"]
    assert {k: edited[k] for k in ("id", "seq", "sender_id", "created_at", "deleted")} == {
        k: original[k] for k in ("id", "seq", "sender_id", "created_at", "deleted")
    }
    for s in (a, b):
        [event] = await s.wait_for("message:updated", lambda m: m["id"] == original["id"])
        assert event == edited
    [listed] = (await api.history(bob, room_id))["messages"]
    assert listed["body"] == "hello" and listed["edited_at"] == edited["edited_at"]


async def test_only_the_sender_edits(api: Api, open_socket: OpenSocket) -> None:
    alice, bob, mallory = await api.signup(), await api.signup(), await api.signup()
    room_id = (await api.create_room(alice, bob))["id"]
    b = await open_socket(bob)
    mine = await stored(api, bob, room_id, "bob's words", b)

    # Not even the room's owner edits another's words; a stranger does not see the room.
    r = await patch(api, alice, room_id, mine["id"], "alice's words")
    assert r.status_code == 403 and error_code(r) == "forbidden"
    r = await patch(api, mallory, room_id, mine["id"], "mallory's words")
    assert r.status_code == 404 and error_code(r) == "not_found"
    r = await patch(api, bob, room_id, str(uuid.uuid4()), "no such message")
    assert r.status_code == 404 and error_code(r) == "not_found"
    r = await patch(api, bob, room_id, mine["id"], "   ")
    assert r.status_code == 422 and error_code(r) == "validation_error"
    r = await patch(api, bob, room_id, mine["id"], "x" * 4001)
    assert r.status_code == 422
    # A message is edited only through its own room.
    other_room = (await api.create_room(bob))["id"]
    r = await patch(api, bob, other_room, mine["id"], "moved?")
    assert r.status_code == 404
    [unchanged] = (await api.history(bob, room_id))["messages"]
    assert unchanged["body"] == "bob's words" and unchanged["edited_at"] is None
    assert "message:updated" not in b.events


async def test_delete_leaves_a_tombstone_with_its_seq(api: Api, open_socket: OpenSocket) -> None:
    alice, bob = await api.signup(), await api.signup()
    room_id = (await api.create_room(alice, bob))["id"]
    a, b = await open_socket(alice), await open_socket(bob)
    first = await stored(api, bob, room_id, "one", a)
    second = await stored(api, bob, room_id, "two", a)
    third = await stored(api, bob, room_id, "three", a)

    r = await delete(api, bob, room_id, second["id"])
    assert r.status_code == 204 and r.content == b""
    for s in (a, b):
        [event] = await s.wait_for("message:deleted", lambda e: e["id"] == second["id"])
        assert event == {"room_id": room_id, "id": second["id"], "seq": 2}

    page = (await api.history(alice, room_id))["messages"]
    assert [m["seq"] for m in page] == [1, 2, 3]  # no gap
    tombstone = page[1]
    assert tombstone["deleted"] is True and tombstone["body"] == ""
    assert tombstone["id"] == second["id"] and tombstone["sender_id"] == bob.id
    assert page[0] == first and page[2] == third
    ack = await a.call("sync", {"room_id": room_id, "after_seq": 1, "limit": 1})
    assert ack["messages"][0]["deleted"] is True and ack["has_more"] is True

    # A tombstone cannot be edited; deleting it again changes nothing.
    r = await patch(api, bob, room_id, second["id"], "back from the dead")
    assert r.status_code == 409 and error_code(r) == "conflict"
    assert (await delete(api, bob, room_id, second["id"])).status_code == 204
    assert len(b.events["message:deleted"]) == 1
    # The room's next message still takes the next seq.
    fourth = await stored(api, alice, room_id, "four", b)
    assert fourth["seq"] == 4


async def test_who_may_delete(api: Api, open_socket: OpenSocket) -> None:
    owner, bob, carol, mallory = [await api.signup() for _ in range(4)]
    room_id = (await api.create_room(owner, bob, carol))["id"]
    c = await open_socket(carol)
    bobs = await stored(api, bob, room_id, "bob says", c)
    owners = await stored(api, owner, room_id, "owner says", c)

    for who, message, status in (
        (carol, bobs, 403),  # a member deletes only their own
        (bob, owners, 403),  # ... even the owner's message stays
        (mallory, bobs, 404),  # a stranger does not see the room
    ):
        r = await delete(api, who, room_id, message["id"])
        assert r.status_code == status, (who, r.text)
    r = await delete(api, bob, room_id, str(uuid.uuid4()))
    assert r.status_code == 404
    # The owner moderates: deletes someone else's message.
    assert (await delete(api, owner, room_id, bobs["id"])).status_code == 204
    await c.wait_for("message:deleted", lambda e: e["id"] == bobs["id"])
    page = (await api.history(carol, room_id))["messages"]
    assert [(m["seq"], m["deleted"]) for m in page] == [(1, True), (2, False)]
