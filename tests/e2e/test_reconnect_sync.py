"""Catching up after a reconnect on a real `chat serve`: the recipe of docs/realtime.md."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tests.support.clients import Account, Api, Socket

# The e2e conftest's `open_socket` fixture: connect a socket as a user.
OpenSocket = Callable[[Account], Awaitable[Socket]]


async def send_stored(
    api: Api, who: Account, room_id: str, bodies: list[str], watcher: Socket
) -> None:
    for body in bodies:
        assert (await api.send(who, room_id, body)).status_code == 202
    await watcher.wait_for(
        "message:new", lambda m: m["room_id"] == room_id and m["body"] in bodies, count=len(bodies)
    )


async def test_reconnect_and_sync_gets_exactly_what_was_missed(
    api: Api, open_socket: OpenSocket
) -> None:
    alice, bob = await api.signup(), await api.signup()
    room_id = (await api.create_room(alice, bob))["id"]
    a, b = await open_socket(alice), await open_socket(bob)
    await send_stored(api, alice, room_id, ["seen 1", "seen 2"], b)
    # The client remembers the last seq it saw in each room.
    last_seq = max(m["seq"] for m in b.events["message:new"] if m["room_id"] == room_id)
    assert last_seq == 2

    await b.disconnect()
    missed = [f"missed {i}" for i in range(5)]
    await send_stored(api, alice, room_id, missed, a)

    again = await open_socket(bob)
    ack = await again.call("sync", {"room_id": room_id, "after_seq": last_seq})
    assert ack["ok"] is True and ack["has_more"] is False
    assert [(m["seq"], m["body"]) for m in ack["messages"]] == list(enumerate(missed, start=3))
    assert all(m["sender_id"] == alice.id and m["room_id"] == room_id for m in ack["messages"])
    # The old socket really missed them: nothing arrived after it went away.
    assert [m["body"] for m in b.events["message:new"]] == ["seen 1", "seen 2"]
    # History with the same cursor answers the same page.
    page = await api.history(bob, room_id, after_seq=last_seq)
    assert page["messages"] == ack["messages"] and page["has_more"] is False

    # Live again: the next message arrives on the new socket, right after the synced ones.
    r = await api.send(alice, room_id, "live again")
    [live] = await again.wait_for("message:new", lambda m: m["id"] == r.json()["message"]["id"])
    assert live["seq"] == 8


async def test_sync_pages_a_long_gap_in_order(api: Api, open_socket: OpenSocket) -> None:
    alice, bob = await api.signup(), await api.signup()
    room_id = (await api.create_room(alice, bob))["id"]
    a = await open_socket(alice)
    await send_stored(api, alice, room_id, [f"m{i}" for i in range(7)], a)

    b = await open_socket(bob)
    seen: list[int] = []
    after, pages = 0, 0
    while True:
        ack = await b.call("sync", {"room_id": room_id, "after_seq": after, "limit": 3})
        assert ack["ok"] is True
        seen += [m["seq"] for m in ack["messages"]]
        pages += 1
        if not ack["has_more"]:
            break
        after = seen[-1]
    assert seen == list(range(1, 8)) and pages == 3
    # Up to date: an empty page, nothing more.
    ack = await b.call("sync", {"room_id": room_id, "after_seq": 7})
    assert ack == {"ok": True, "messages": [], "has_more": False}
    # The sender's own messages come with their status, as in history.
    ack = await a.call("sync", {"room_id": room_id, "after_seq": 6})
    assert [m["status"] for m in ack["messages"]] == ["stored"]


async def test_sync_rejects_bad_requests(api: Api, open_socket: OpenSocket) -> None:
    alice, mallory = await api.signup(), await api.signup()
    room_id = (await api.create_room(alice))["id"]
    a, m = await open_socket(alice), await open_socket(mallory)
    for payload in (
        {"room_id": room_id},
        {"room_id": room_id, "after_seq": -1},
        {"room_id": room_id, "after_seq": "0"},
        {"room_id": room_id, "after_seq": 0, "limit": 201},
        {"room_id": room_id, "after_seq": 0, "limit": 0},
        None,
    ):
        ack = await a.call("sync", payload)
        assert ack["ok"] is False and ack["error"]["code"] == "validation_error", payload
    ack = await m.call("sync", {"room_id": room_id, "after_seq": 0})
    assert ack == {"ok": False, "error": {"code": "not_found", "message": "room not found"}}
