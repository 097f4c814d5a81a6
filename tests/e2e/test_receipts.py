"""Delivery and read receipts on a real embedded `chat serve`: markers, `receipt` events,
the sender's status in history, and `unread_count`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tests.support.clients import Account, Api, Socket

# The e2e conftest's `open_socket` fixture: connect a socket as a user.
OpenSocket = Callable[[Account], Awaitable[Socket]]


def receipt_of(room_id: str, user_id: str, seq: int, kind: str) -> dict[str, Any]:
    return {"room_id": room_id, "user_id": user_id, "seq": seq, "kind": kind}


async def send_and_wait(api: Api, who: Account, room_id: str, watcher: Socket, n: int) -> None:
    """Send ``n`` messages and wait until ``watcher`` saw all of them stored."""
    for i in range(n):
        assert (await api.send(who, room_id, f"m{i}")).status_code == 202
    await watcher.wait_for("message:new", lambda m: m["room_id"] == room_id, count=n)


async def statuses(api: Api, who: Account, room_id: str) -> list[str | None]:
    return [m.get("status") for m in (await api.history(who, room_id))["messages"]]


async def markers(api: Api, who: Account, room_id: str) -> dict[str, tuple[int, int]]:
    r = await api.http.get(f"/api/v1/rooms/{room_id}/receipts", headers=who.headers)
    assert r.status_code == 200, r.text
    return {x["user_id"]: (x["delivered_seq"], x["read_seq"]) for x in r.json()["receipts"]}


async def unread(api: Api, who: Account, room_id: str) -> int:
    r = await api.http.get("/api/v1/rooms", headers=who.headers)
    [room] = [x for x in r.json()["rooms"] if x["id"] == room_id]
    count: int = room["unread_count"]
    return count


async def test_sender_status_goes_stored_delivered_read(api: Api, open_socket: OpenSocket) -> None:
    alice, bob = await api.signup("alice"), await api.signup("bob")
    room_id = (await api.create_room(alice, bob))["id"]
    a, b = await open_socket(alice), await open_socket(bob)
    await send_and_wait(api, alice, room_id, b, 3)
    assert await statuses(api, alice, room_id) == ["stored"] * 3
    # Status is the sender's view: other people's messages carry none.
    assert await statuses(api, bob, room_id) == [None] * 3

    assert await b.call("delivered", {"room_id": room_id, "seq": 2}) == {"ok": True}
    await a.wait_for("receipt", lambda e: e == receipt_of(room_id, bob.id, 2, "delivered"))
    assert await statuses(api, alice, room_id) == ["delivered", "delivered", "stored"]

    r = await api.http.post(f"/api/v1/rooms/{room_id}/read", json={"seq": 1}, headers=bob.headers)
    assert r.status_code == 204
    await a.wait_for("receipt", lambda e: e == receipt_of(room_id, bob.id, 1, "read"))
    assert await statuses(api, alice, room_id) == ["read", "delivered", "stored"]

    # Reading implies receiving: a read to 3 drags the delivery marker along, two receipts.
    assert await b.call("read", {"room_id": room_id, "seq": 3}) == {"ok": True}
    both = [receipt_of(room_id, bob.id, 3, kind) for kind in ("delivered", "read")]
    assert await a.wait_for("receipt", lambda e: e in both, count=2) == both
    # The reader's own sockets hear it too (other devices clear their unread badge).
    await b.wait_for("receipt", lambda e: e == receipt_of(room_id, bob.id, 3, "read"))
    assert await statuses(api, alice, room_id) == ["read"] * 3
    # sync answers the same status as history.
    ack = await a.call("sync", {"room_id": room_id, "after_seq": 0})
    assert [m["status"] for m in ack["messages"]] == ["read"] * 3


async def test_markers_only_move_forward_and_stay_within_the_room(
    api: Api, open_socket: OpenSocket
) -> None:
    alice, bob = await api.signup(), await api.signup()
    room_id = (await api.create_room(alice, bob))["id"]
    a, b = await open_socket(alice), await open_socket(bob)
    await send_and_wait(api, alice, room_id, b, 4)
    assert await markers(api, bob, room_id) == {alice.id: (0, 0), bob.id: (0, 0)}

    await b.call("read", {"room_id": room_id, "seq": 3})
    await a.wait_for("receipt", lambda e: e["kind"] == "read" and e["seq"] == 3)
    # Backwards reports are accepted and change nothing, by socket or REST.
    assert await b.call("delivered", {"room_id": room_id, "seq": 1}) == {"ok": True}
    assert await b.call("read", {"room_id": room_id, "seq": 2}) == {"ok": True}
    r = await api.http.post(f"/api/v1/rooms/{room_id}/read", json={"seq": 0}, headers=bob.headers)
    assert r.status_code == 204
    assert await markers(api, alice, room_id) == {alice.id: (0, 0), bob.id: (3, 3)}
    # A marker never points past the room's last message.
    r = await api.http.post(f"/api/v1/rooms/{room_id}/read", json={"seq": 99}, headers=bob.headers)
    assert r.status_code == 204
    await a.wait_for("receipt", lambda e: e == receipt_of(room_id, bob.id, 4, "read"))
    assert await markers(api, alice, room_id) == {alice.id: (0, 0), bob.id: (4, 4)}
    # No receipt was ever emitted for a backward move.
    assert all(e["seq"] in (3, 4) for e in a.events["receipt"])


async def test_three_members_delivered_only_when_both_others_have_it(
    api: Api, open_socket: OpenSocket
) -> None:
    alice, bob, carol = await api.signup(), await api.signup(), await api.signup()
    room_id = (await api.create_room(alice, bob, carol))["id"]
    a, b, c = await open_socket(alice), await open_socket(bob), await open_socket(carol)
    await send_and_wait(api, alice, room_id, c, 1)

    await b.call("delivered", {"room_id": room_id, "seq": 1})
    await a.wait_for("receipt", lambda e: e == receipt_of(room_id, bob.id, 1, "delivered"))
    assert await statuses(api, alice, room_id) == ["stored"]
    await c.call("delivered", {"room_id": room_id, "seq": 1})
    await a.wait_for("receipt", lambda e: e == receipt_of(room_id, carol.id, 1, "delivered"))
    assert await statuses(api, alice, room_id) == ["delivered"]

    await b.call("read", {"room_id": room_id, "seq": 1})
    await a.wait_for("receipt", lambda e: e == receipt_of(room_id, bob.id, 1, "read"))
    assert await statuses(api, alice, room_id) == ["delivered"]
    await c.call("read", {"room_id": room_id, "seq": 1})
    # Every member hears every receipt of the room.
    await b.wait_for("receipt", lambda e: e == receipt_of(room_id, carol.id, 1, "read"))
    assert await statuses(api, alice, room_id) == ["read"]


async def test_unread_count_follows_the_read_marker(api: Api, open_socket: OpenSocket) -> None:
    alice, bob = await api.signup(), await api.signup()
    room_id = (await api.create_room(alice, bob))["id"]
    a, b = await open_socket(alice), await open_socket(bob)
    await send_and_wait(api, alice, room_id, b, 3)
    assert await unread(api, bob, room_id) == 3
    assert await unread(api, alice, room_id) == 0  # one's own messages are never unread

    await api.http.post(f"/api/v1/rooms/{room_id}/read", json={"seq": 1}, headers=bob.headers)
    assert await unread(api, bob, room_id) == 2
    # Bob's own message does not count for him, and counts for alice.
    assert (await api.send(bob, room_id, "reply")).status_code == 202
    await a.wait_for("message:new", lambda m: m["sender_id"] == bob.id)
    assert await unread(api, bob, room_id) == 2
    assert await unread(api, alice, room_id) == 1
    await b.call("read", {"room_id": room_id, "seq": 4})
    assert await unread(api, bob, room_id) == 0
    await a.call("read", {"room_id": room_id, "seq": 4})
    assert await unread(api, alice, room_id) == 0


async def test_receipts_are_for_members_only(api: Api, open_socket: OpenSocket) -> None:
    alice, mallory = await api.signup(), await api.signup()
    room_id = (await api.create_room(alice))["id"]
    m = await open_socket(mallory)
    for r in (
        await api.http.get(f"/api/v1/rooms/{room_id}/receipts", headers=mallory.headers),
        await api.http.post(
            f"/api/v1/rooms/{room_id}/read", json={"seq": 1}, headers=mallory.headers
        ),
    ):
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    for event in ("delivered", "read"):
        ack = await m.call(event, {"room_id": room_id, "seq": 1})
        assert ack["ok"] is False and ack["error"]["code"] == "not_found"
    bad = await api.http.post(
        f"/api/v1/rooms/{room_id}/read", json={"seq": -1}, headers=alice.headers
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"
    ack = await m.call("read", {"room_id": room_id, "seq": "3"})
    assert ack["ok"] is False and ack["error"]["code"] == "validation_error"
    assert await markers(api, alice, room_id) == {alice.id: (0, 0)}
