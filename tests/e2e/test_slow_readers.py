"""A socket whose client stops reading is disconnected before it holds much memory.

engine.io queued every frame for a socket without bound: a logged-in client that stopped
reading made the server hold ~30 MB for it while 8,000 messages went by. Now a socket's
queue holds at most CHAT_SOCKET_SEND_BUFFER_BYTES, and a frame waits at most
CHAT_SOCKET_SEND_TIMEOUT_SECONDS: past either the socket is disconnected (its user goes
offline for the others) and the client recovers with ``sync`` after reconnecting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.support.clients import Api, Socket
from tests.support.metrics import scrape
from tests.support.processes import ChatProcess, chat_serve
from tests.support.raw_socket import RawSocket

SEND_BUFFER = 64 * 1024
BODY = "x" * 3900
BATCH = 20
# The kernel's buffers take a few MB before the server's queue grows: ~2.8 MB measured.
MOST_MESSAGES = 2000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatProcess]:
    env = {
        "CHAT_SOCKET_SEND_BUFFER_BYTES": str(SEND_BUFFER),
        "CHAT_SOCKET_SEND_TIMEOUT_SECONDS": "5",
        "CHAT_RATE_SEND_PER_SECOND": "100000",
        "CHAT_RATE_SEND_BURST": "100000",
    }
    process = chat_serve(tmp_path_factory.mktemp("slow-readers"), env).start()
    yield process
    assert process.stop() == 0, process.log()


def went_offline(user_id: str):  # type: ignore[no-untyped-def]
    return lambda p: p == {"user_id": user_id, "online": False}


async def test_a_client_that_stops_reading_is_disconnected_within_the_bound(
    server: ChatProcess,
) -> None:
    api = Api(server.url)
    sender: Socket | None = None
    stuck: RawSocket | None = None
    try:
        alice, bob = await api.signup(), await api.signup()
        room = await api.create_room(alice, bob)
        sender = await Socket(server.url, alice.token).connect()
        stuck = await RawSocket.open(server.url, receive_buffer=4096)
        await stuck.login(bob.token)
        await sender.wait_for("presence", lambda p: p == {"user_id": bob.id, "online": True})
        # Bob reads nothing from here on. Alice sends until he is dropped (or too long).
        largest_queue = 0.0
        sent = 0
        offline = {"user_id": bob.id, "online": False}
        while sent < MOST_MESSAGES and offline not in sender.events["presence"]:
            acks = await asyncio.gather(
                *(
                    sender.call("message:send", {"room_id": room["id"], "body": BODY})
                    for _ in range(BATCH)
                )
            )
            assert all(a["ok"] for a in acks), acks
            sent += BATCH
            samples = await scrape(server.url, api.http)
            largest_queue = max(largest_queue, samples.get("chat_socket_send_queue_bytes_max", 0.0))
        await sender.wait_for("presence", went_offline(bob.id), timeout=15)
        samples = await scrape(server.url, api.http)
        dropped = samples[
            'chat_socket_send_dropped_total{reason="send_buffer_full"}'
        ] + samples.get('chat_socket_send_dropped_total{reason="send_timeout"}', 0.0)
        assert dropped == 1
        assert largest_queue <= SEND_BUFFER
        assert samples["chat_socket_send_queue_bytes"] <= SEND_BUFFER
        # Alice's own socket never stopped working, and the history has every message.
        assert sender.client.connected
        assert (await api.history(bob, room["id"], limit=1))["messages"][0]["seq"] == sent
    finally:
        if stuck is not None:
            await stuck.close()
        if sender is not None:
            await sender.disconnect()
        await api.close()
