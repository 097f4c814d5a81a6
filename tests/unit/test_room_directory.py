"""A node that cannot be listed in the room directory refuses the socket instead of
leaving it deaf: ``join`` raises ``Unavailable`` (the connect handler's refusal)."""

from __future__ import annotations

import logging

import pytest
from redis import asyncio as aioredis

from chat_adapters.socketio.room_directory import Room, RoomDirectory
from chat_domain.errors import Unavailable
from tests.support.processes import free_port


def directory(held: set[Room]) -> RoomDirectory:
    nowhere = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    return RoomDirectory(
        lambda: nowhere,
        "test",
        "node-1",
        holds=lambda room: room in held,
        held=lambda: list(held),
        lease_seconds=30.0,
        log=logging.getLogger("tests.directory"),
        write_timeout=0.5,
    )


async def test_a_node_not_subscribed_is_not_listed_and_says_so() -> None:
    room = ("/", "user:u")
    d = directory({room})
    with pytest.raises(Unavailable, match="not written in time"):
        await d.join(room)
    await d.close()


async def test_a_listing_redis_refuses_is_reported_to_the_socket_waiting_for_it() -> None:
    room = ("/", "user:u")
    d = directory({room})
    d.subscribed.set()
    with pytest.raises(Unavailable):
        await d.join(room)
    await d.close()
