"""Membership changes reach sockets that are already connected, on a real `chat serve`:
an added user hears the room from then on, a removed one hears nothing more of it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tests.support.clients import Account, Api, Socket

# The e2e conftest's `open_socket` fixture: connect a socket as a user.
OpenSocket = Callable[[Account], Awaitable[Socket]]


async def add(api: Api, actor: Account, room_id: str, user: Account) -> int:
    r = await api.http.post(
        f"/api/v1/rooms/{room_id}/members", json={"user_id": user.id}, headers=actor.headers
    )
    return r.status_code


async def remove(api: Api, actor: Account, room_id: str, user: Account) -> int:
    r = await api.http.delete(f"/api/v1/rooms/{room_id}/members/{user.id}", headers=actor.headers)
    return r.status_code


def of_room(room_id: str, events: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for e in events if e["room_id"] == room_id]


async def test_added_user_hears_the_room_on_a_socket_already_connected(
    api: Api, open_socket: OpenSocket
) -> None:
    alice, bob, carol = await api.signup(), await api.signup(), await api.signup()
    room_id = (await api.create_room(alice, bob))["id"]
    # Carol's sockets (two devices) connect before she is a member of anything.
    c1, c2 = await open_socket(carol), await open_socket(carol)
    b = await open_socket(bob)
    await api.send(alice, room_id, "before carol")
    await b.wait_for("message:new", lambda m: m["room_id"] == room_id)

    assert await add(api, bob, room_id, carol) == 201  # any member may add
    added = {"room_id": room_id, "user_id": carol.id}
    for s in (c1, c2, b):
        await s.wait_for("room:member_added", lambda e: e == added)

    r = await api.send(alice, room_id, "welcome carol")
    message_id = r.json()["message"]["id"]
    for s in (c1, c2):
        [got] = await s.wait_for("message:new", lambda m: m["id"] == message_id)
        assert got["seq"] == 2 and got["body"] == "welcome carol"
    # She missed nothing live she was entitled to, and can read the room's past.
    assert [m["room_id"] for m in c1.events["message:new"]] == [room_id]
    ack = await c1.call("sync", {"room_id": room_id, "after_seq": 0})
    assert [m["body"] for m in ack["messages"]] == ["before carol", "welcome carol"]
    # Her other events of the room reach her too: typing and receipts.
    await b.call("typing", {"room_id": room_id, "is_typing": True})
    await c1.wait_for("typing", lambda e: e["room_id"] == room_id and e["user_id"] == bob.id)
    await b.call("read", {"room_id": room_id, "seq": 2})
    await c2.wait_for("receipt", lambda e: e["user_id"] == bob.id and e["kind"] == "read")


async def test_user_added_at_creation_hears_the_room(api: Api, open_socket: OpenSocket) -> None:
    alice, bob = await api.signup(), await api.signup()
    b = await open_socket(bob)
    room_id = (await api.create_room(alice, bob))["id"]
    await b.wait_for("room:member_added", lambda e: e == {"room_id": room_id, "user_id": bob.id})
    r = await api.send(alice, room_id, "hi")
    await b.wait_for("message:new", lambda m: m["id"] == r.json()["message"]["id"])


async def test_removed_member_hears_nothing_more_and_loses_the_room(
    api: Api, open_socket: OpenSocket
) -> None:
    alice, bob, carol = await api.signup(), await api.signup(), await api.signup()
    room_id = (await api.create_room(alice, bob, carol))["id"]
    a, b, c = await open_socket(alice), await open_socket(bob), await open_socket(carol)
    await api.send(alice, room_id, "all three of us")
    await b.wait_for("message:new", lambda m: m["room_id"] == room_id)

    assert await remove(api, carol, room_id, bob) == 403  # only the owner removes others
    assert await remove(api, alice, room_id, bob) == 204
    removed = {"room_id": room_id, "user_id": bob.id}
    for s in (a, b, c):  # the removed user hears it too
        await s.wait_for("room:member_removed", lambda e: e == removed)

    for i in range(5):
        assert (await api.send(alice, room_id, f"after {i}")).status_code == 202
    await c.call("typing", {"room_id": room_id, "is_typing": True})
    ack = await c.call("read", {"room_id": room_id, "seq": 6})
    assert ack == {"ok": True}
    await api.http.patch(
        f"/api/v1/rooms/{room_id}/messages/{b.events['message:new'][0]['id']}",
        json={"body": "edited after bob left"},
        headers=alice.headers,
    )
    # Alice, who stayed, got everything; by then bob's socket has had every chance.
    await a.wait_for("message:new", lambda m: m["room_id"] == room_id, count=6)
    await a.wait_for("receipt", lambda e: e["user_id"] == carol.id and e["kind"] == "read")
    await a.wait_for("typing", lambda e: e["user_id"] == carol.id)
    await a.wait_for("message:updated", lambda m: m["room_id"] == room_id)
    assert [m["body"] for m in of_room(room_id, b.events["message:new"])] == ["all three of us"]
    for event in ("typing", "receipt", "message:updated", "message:deleted"):
        assert of_room(room_id, b.events[event]) == [], event

    # And bob can no longer read or write the room, by REST or socket.
    for r in (
        await api.http.get(f"/api/v1/rooms/{room_id}/messages", headers=bob.headers),
        await api.http.get(f"/api/v1/rooms/{room_id}", headers=bob.headers),
        await api.http.get(f"/api/v1/rooms/{room_id}/receipts", headers=bob.headers),
        await api.send(bob, room_id, "let me back"),
    ):
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    ack = await b.call("sync", {"room_id": room_id, "after_seq": 0})
    assert ack == {"ok": False, "error": {"code": "not_found", "message": "room not found"}}
    rooms = (await api.http.get("/api/v1/rooms", headers=bob.headers)).json()["rooms"]
    assert room_id not in [x["id"] for x in rooms]


async def test_a_member_who_leaves_hears_nothing_more(api: Api, open_socket: OpenSocket) -> None:
    alice, bob = await api.signup(), await api.signup()
    room_id = (await api.create_room(alice, bob))["id"]
    a, b = await open_socket(alice), await open_socket(bob)
    assert await remove(api, bob, room_id, bob) == 204
    await a.wait_for("room:member_removed", lambda e: e == {"room_id": room_id, "user_id": bob.id})
    await b.wait_for("room:member_removed", lambda e: e["room_id"] == room_id)
    for i in range(3):
        await api.send(alice, room_id, f"alone {i}")
    await a.wait_for("message:new", lambda m: m["room_id"] == room_id, count=3)
    assert of_room(room_id, b.events["message:new"]) == []
    # Leaving twice: no longer a member, the room is not found.
    assert await remove(api, bob, room_id, bob) == 404
    # Added back, bob hears the room again on the same socket.
    assert await add(api, alice, room_id, bob) == 201
    await b.wait_for("room:member_added", lambda e: e["room_id"] == room_id)
    r = await api.send(alice, room_id, "welcome back")
    [got] = await b.wait_for("message:new", lambda m: m["id"] == r.json()["message"]["id"])
    assert got["seq"] == 4


async def test_membership_errors(api: Api) -> None:
    alice, bob, mallory = await api.signup(), await api.signup(), await api.signup()
    room_id = (await api.create_room(alice))["id"]
    assert await add(api, mallory, room_id, mallory) == 404  # strangers cannot add themselves
    r = await api.http.post(
        f"/api/v1/rooms/{room_id}/members", json={"user_id": "no-such-user"}, headers=alice.headers
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert await remove(api, alice, room_id, bob) == 404  # not a member
    assert await add(api, alice, room_id, bob) == 201
    assert await add(api, alice, room_id, bob) == 200  # already there
