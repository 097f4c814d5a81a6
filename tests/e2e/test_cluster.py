"""Several nodes form one service: two `chat serve` and one `chat worker` on RabbitMQ, Redis
and PostgreSQL. A client on any node gets every event of its rooms."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis

from tests.support.clients import Api, Socket
from tests.support.cluster import Cluster, cluster
from tests.support.processes import CHAT, clean_env
from tests.support.services import POSTGRES, RABBITMQ, REDIS, require

pytestmark = pytest.mark.slow
RECHECK_S = 1


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    for service in (POSTGRES, RABBITMQ, REDIS):
        require(service)
    # A short recheck, so an operator's change reaches the nodes quickly (see the last test).
    overrides = {"CHAT_SESSION_RECHECK_SECONDS": str(RECHECK_S)}
    with cluster(
        Path(tmp_path_factory.mktemp("cluster")), servers=2, workers=1, overrides=overrides
    ) as c:
        yield c


async def test_a_socket_on_node_a_receives_what_was_posted_on_node_b(
    apis: list[Api], sockets: list[Socket], nodes: Cluster
) -> None:
    a, b = apis
    alice, bob = await a.signup("alice"), await a.signup("bob")
    room = await a.create_room(alice, bob)
    bob_on_a = await Socket(nodes.servers[0].url, bob.token).connect()
    alice_on_b = await Socket(nodes.servers[1].url, alice.token).connect()
    sockets += [bob_on_a, alice_on_b]

    r = await b.send(alice, room["id"], "crossing nodes")
    assert r.status_code == 202
    message_id = r.json()["message"]["id"]
    for s in (bob_on_a, alice_on_b):
        [got] = await s.wait_for("message:new", lambda m: m["id"] == message_id, timeout=15)
        assert got["seq"] == 1

    ack = await bob_on_a.call("message:send", {"room_id": room["id"], "body": "and back"})
    assert ack["ok"], ack
    [back] = await alice_on_b.wait_for(
        "message:new", lambda m: m["id"] == ack["message"]["id"], timeout=15
    )
    assert back["seq"] == 2


async def test_a_member_added_on_node_b_gets_events_on_node_a(
    apis: list[Api], sockets: list[Socket], nodes: Cluster
) -> None:
    a, b = apis
    alice, carol = await a.signup("alice"), await a.signup("carol")
    room = await a.create_room(alice)
    carol_on_a = await Socket(nodes.servers[0].url, carol.token).connect()
    sockets.append(carol_on_a)

    r = await b.http.post(
        f"/api/v1/rooms/{room['id']}/members", json={"user_id": carol.id}, headers=alice.headers
    )
    assert r.status_code == 201
    await carol_on_a.wait_for(
        "room:member_added", lambda e: e == {"room_id": room["id"], "user_id": carol.id}
    )
    r = await b.send(alice, room["id"], "welcome carol")
    message_id = r.json()["message"]["id"]
    await carol_on_a.wait_for("message:new", lambda m: m["id"] == message_id, timeout=15)

    # Removed on node B: nothing more reaches her socket on node A.
    r = await b.http.delete(f"/api/v1/rooms/{room['id']}/members/{carol.id}", headers=alice.headers)
    assert r.status_code == 204
    await carol_on_a.wait_for("room:member_removed", lambda e: e["user_id"] == carol.id)
    alice_on_a = await Socket(nodes.servers[0].url, alice.token).connect()
    sockets.append(alice_on_a)
    r = await b.send(alice, room["id"], "carol is gone")
    after_id = r.json()["message"]["id"]
    await alice_on_a.wait_for("message:new", lambda m: m["id"] == after_id, timeout=15)
    assert after_id not in {m["id"] for m in carol_on_a.events["message:new"]}


async def test_a_connecting_socket_gets_its_presence_list_without_pub_sub(
    apis: list[Api], sockets: list[Socket], nodes: Cluster
) -> None:
    # The list goes to a socket of this node: published, every node would read and drop
    # it, n² messages for n members of a room coming online.
    a, _ = apis
    alice, bob = await a.signup("alice"), await a.signup("bob")
    room = await a.create_room(alice, bob)
    alice_on_a = await Socket(nodes.servers[0].url, alice.token).connect()
    sockets.append(alice_on_a)
    async with redis.from_url(REDIS.url) as client, client.pubsub() as channel:
        await channel.subscribe(nodes.redis_channel)  # to every node
        await channel.psubscribe(f"{nodes.redis_channel}:node:*")  # to one node each
        bob_on_b = await Socket(nodes.servers[1].url, bob.token).connect()
        sockets.append(bob_on_b)
        await bob_on_b.wait_for("presence", lambda e: e == {"user_id": alice.id, "online": True})

        # Bob's typing crosses the channel after anything node B published for his connect.
        assert (await bob_on_b.call("typing", {"room_id": room["id"], "is_typing": True}))["ok"]
        await alice_on_a.wait_for("typing", lambda e: e["user_id"] == bob.id)
        published: list[bytes] = []
        deadline = asyncio.get_running_loop().time() + 10
        while not any(b'"typing"' in p for p in published):
            assert asyncio.get_running_loop().time() < deadline, published
            message = await channel.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None:  # None: a subscribe confirmation, or a quiet second
                published.append(message["data"])

    bob_sid = bob_on_b.client.get_sid().encode()
    assert not [p for p in published if bob_sid in p]
    assert any(b'"presence"' in p for p in published)  # bob's own arrival, to the room


async def test_readiness_names_every_backing_service(apis: list[Api]) -> None:
    for api in apis:
        r = await api.http.get("/readyz")
        assert r.status_code == 200, r.text
        assert set(r.json()["checks"]) >= {"database", "broker", "socketio"}


async def test_an_operators_deactivation_ends_the_users_sessions_on_every_node(
    apis: list[Api], sockets: list[Socket], nodes: Cluster
) -> None:
    """`chat users deactivate` reaches only the database; both nodes find out from it."""
    carol = await apis[0].signup("carol")
    dropped: list[asyncio.Event] = []
    for server in nodes.servers:
        socket = await Socket(server.url, carol.token).connect()
        sockets.append(socket)
        gone = asyncio.Event()
        socket.client.on("disconnect", lambda *_, gone=gone: gone.set())
        dropped.append(gone)

    deactivated = await asyncio.to_thread(
        subprocess.run,
        [CHAT, "users", "deactivate", carol.username],
        cwd=nodes.workdir,
        env=clean_env(nodes.env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert deactivated.returncode == 0, deactivated.stderr

    within = RECHECK_S + 14  # the recheck interval and a margin for a loaded machine
    await asyncio.wait_for(asyncio.gather(*(gone.wait() for gone in dropped)), within)
    for api in apis:
        deadline = asyncio.get_running_loop().time() + within
        # No event tells a client; it asks again until its node has read the change.
        while (await api.http.get("/api/v1/rooms", headers=carol.headers)).status_code != 401:
            assert asyncio.get_running_loop().time() < deadline, api.base_url
            await asyncio.sleep(0.2)
        r = await api.http.post(
            "/api/v1/auth/login",
            json={"username": carol.username, "password": "correct horse battery"},
        )
        assert r.status_code == 401
