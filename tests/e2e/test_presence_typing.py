"""Presence and typing on a real embedded `chat serve`, through real socket.io clients."""

from __future__ import annotations

import time
from typing import Any

from tests.support.clients import Account, Api, Socket


async def flush(api: Api, who: Account, room_id: str, s: Socket) -> None:
    """Events emitted before this are delivered to ``s`` once its own message arrives."""
    r = await api.send(who, room_id, "flush")
    await s.wait_for("message:new", lambda m: m["id"] == r.json()["message"]["id"])


def about(user_id: str, online: bool) -> Any:
    return lambda p: p == {"user_id": user_id, "online": online}


async def test_presence_follows_the_first_and_last_socket_of_a_user(api: Api, open_socket) -> None:  # type: ignore[no-untyped-def]
    alice, bob = await api.signup("alice"), await api.signup("bob")
    room = await api.create_room(alice, bob)
    b: Socket = await open_socket(bob)

    a1: Socket = await open_socket(alice)
    await b.wait_for("presence", about(alice.id, True))
    # The new socket is told who of its room mates is online right after connecting.
    await a1.wait_for("presence", about(bob.id, True))

    a2: Socket = await open_socket(alice)
    await a2.wait_for("presence", about(bob.id, True))
    await a1.disconnect()
    # Alice is still online through a2: flush with a message, Bob heard no "offline".
    await flush(api, bob, room["id"], b)
    assert b.events["presence"] == [{"user_id": alice.id, "online": True}]

    await a2.disconnect()
    await b.wait_for("presence", about(alice.id, False))
    await flush(api, bob, room["id"], b)
    assert b.events["presence"] == [
        {"user_id": alice.id, "online": True},
        {"user_id": alice.id, "online": False},
    ]


async def test_presence_is_not_sent_to_strangers(api: Api, open_socket) -> None:  # type: ignore[no-untyped-def]
    alice, bob, stranger = await api.signup(), await api.signup(), await api.signup()
    await api.create_room(alice, bob)
    s: Socket = await open_socket(stranger)
    b: Socket = await open_socket(bob)
    a: Socket = await open_socket(alice)
    await b.wait_for("presence", about(alice.id, True))
    await a.disconnect()
    await b.wait_for("presence", about(alice.id, False))
    assert not any(p["user_id"] in {alice.id, bob.id} for p in s.events["presence"])


async def test_typing_reaches_the_other_member_not_the_typist(api: Api, open_socket) -> None:  # type: ignore[no-untyped-def]
    alice, bob = await api.signup(), await api.signup()
    room = await api.create_room(alice, bob)
    a: Socket = await open_socket(alice)
    b: Socket = await open_socket(bob)
    assert await a.call("typing", {"room_id": room["id"], "is_typing": True}) == {"ok": True}
    await b.wait_for("typing", lambda t: t["is_typing"] is True)
    assert await a.call("typing", {"room_id": room["id"], "is_typing": False}) == {"ok": True}
    [stop] = await b.wait_for("typing", lambda t: t["is_typing"] is False)
    assert stop == {"room_id": room["id"], "user_id": alice.id, "is_typing": False}
    # The typist's own sockets got nothing: flush with an event Alice does receive.
    r = await api.send(bob, room["id"], "marker")
    await a.wait_for("message:new", lambda m: m["id"] == r.json()["message"]["id"])
    assert a.events["typing"] == []


async def test_typing_expires_by_itself_without_a_stop(api: Api, open_socket) -> None:  # type: ignore[no-untyped-def]
    alice, bob = await api.signup(), await api.signup()
    room = await api.create_room(alice, bob)
    a: Socket = await open_socket(alice)
    b: Socket = await open_socket(bob)
    started = time.monotonic()
    await a.call("typing", {"room_id": room["id"], "is_typing": True})
    await b.wait_for("typing", lambda t: t["is_typing"] is True)
    [stop] = await b.wait_for("typing", lambda t: t["is_typing"] is False, timeout=12)
    assert stop["user_id"] == alice.id and stop["room_id"] == room["id"]
    assert time.monotonic() - started >= 4  # not at once: after the ~5 s without a refresh
    assert len(b.events["typing"]) == 2  # exactly one expiry


async def test_typing_stops_when_the_typists_socket_goes(api: Api, open_socket) -> None:  # type: ignore[no-untyped-def]
    alice, bob = await api.signup(), await api.signup()
    room = await api.create_room(alice, bob)
    a: Socket = await open_socket(alice)
    b: Socket = await open_socket(bob)
    await a.call("typing", {"room_id": room["id"], "is_typing": True})
    await b.wait_for("typing", lambda t: t["is_typing"] is True)
    started = time.monotonic()
    await a.disconnect()
    await b.wait_for("typing", lambda t: t["is_typing"] is False, timeout=4)
    assert time.monotonic() - started < 4  # at once, not after the expiry
