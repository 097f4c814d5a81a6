"""Targeted delivery on a real cluster (two `chat serve`, one `chat worker`): a node reads
over Redis only the events that have a recipient socket on it, as its own /metrics shows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.clients import Api, Socket
from tests.support.cluster import Cluster, cluster
from tests.support.services import POSTGRES, RABBITMQ, REDIS, require

pytestmark = pytest.mark.slow
MESSAGES = 20


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    for service in (POSTGRES, RABBITMQ, REDIS):
        require(service)
    with cluster(Path(tmp_path_factory.mktemp("targeted")), servers=2, workers=1) as c:
        yield c


async def events_received(api: Api, channel: str) -> float:
    """The node's count of socket.io events it read from Redis (its own /metrics)."""
    r = await api.http.get("/metrics")
    assert r.status_code == 200
    for family in text_string_to_metric_families(r.text):
        if family.name == "chat_socketio_redis_events_received":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels["channel"] == channel:
                    return sample.value
    return 0.0


def total(s: Socket) -> int:
    return sum(len(events) for events in s.events.values())


async def test_a_node_reads_nothing_of_a_room_whose_members_all_sit_elsewhere(
    apis: list[Api], sockets: list[Socket], nodes: Cluster
) -> None:
    a, b = apis
    alice, bob, carol, dave = [await a.signup(name) for name in ("alice", "bob", "carol", "dave")]
    room = await a.create_room(alice, bob, carol)
    with_dave = await a.create_room(alice, dave)  # what node B may legitimately read
    dave_on_b = await Socket(nodes.servers[1].url, dave.token).connect()
    on_a = [await Socket(nodes.servers[0].url, u.token).connect() for u in (alice, bob, carol)]
    sockets += [dave_on_b, *on_a]
    await dave_on_b.wait_for("presence", lambda p: p == {"user_id": alice.id, "online": True})
    b_before, dave_before = await events_received(b, nodes.redis_channel), total(dave_on_b)
    a_before = await events_received(a, nodes.redis_channel)

    # Sent through node B's REST API, even: B stores nothing and delivers nothing of it.
    ids = set()
    for n in range(MESSAGES):
        r = await b.send(alice, room["id"], f"only node A holds us ({n})")
        assert r.status_code == 202, r.text
        ids.add(r.json()["message"]["id"])
    for s in on_a:
        await s.wait_for("message:new", lambda m: m["id"] in ids, count=MESSAGES, timeout=30)
    # A flush for node B: published after the room's events, read after them if at all.
    r = await b.send(alice, with_dave["id"], "for dave")
    marker = r.json()["message"]["id"]
    await dave_on_b.wait_for("message:new", lambda m: m["id"] == marker, timeout=15)

    read_by_b = await events_received(b, nodes.redis_channel) - b_before
    assert read_by_b == total(dave_on_b) - dave_before  # only what dave got, nothing more
    assert read_by_b < MESSAGES
    assert await events_received(a, nodes.redis_channel) - a_before >= MESSAGES


async def test_a_user_who_moves_to_the_other_node_gets_the_next_events_there(
    apis: list[Api], sockets: list[Socket], nodes: Cluster
) -> None:
    a, b = apis
    erin, frank = await a.signup("erin"), await a.signup("frank")
    room = await a.create_room(frank, erin)
    erin_on_a = await Socket(nodes.servers[0].url, erin.token).connect()
    r = await a.send(frank, room["id"], "on A")
    first = r.json()["message"]["id"]
    await erin_on_a.wait_for("message:new", lambda m: m["id"] == first, timeout=15)
    await erin_on_a.disconnect()

    erin_on_b = await Socket(nodes.servers[1].url, erin.token).connect()
    sockets.append(erin_on_b)
    r = await b.send(frank, room["id"], "now on B")
    second = r.json()["message"]["id"]
    [got] = await erin_on_b.wait_for("message:new", lambda m: m["id"] == second, timeout=15)
    assert got["seq"] == 2

    # ...and back to A: the same again, with typing from B's side crossing to A.
    frank_on_b = await Socket(nodes.servers[1].url, frank.token).connect()
    sockets.append(frank_on_b)
    await erin_on_b.disconnect()
    erin_again_on_a = await Socket(nodes.servers[0].url, erin.token).connect()
    sockets.append(erin_again_on_a)
    assert (await frank_on_b.call("typing", {"room_id": room["id"], "is_typing": True}))["ok"]
    await erin_again_on_a.wait_for("typing", lambda e: e["user_id"] == frank.id, timeout=15)


async def test_what_servers_emit_crosses_to_the_node_holding_the_user(
    apis: list[Api], sockets: list[Socket], nodes: Cluster
) -> None:
    """Presence, typing, receipts, edits and deletes are emitted by the server that
    handled the call, to user rooms: routed through the directory like messages."""
    a, _ = apis
    alice, bob = await a.signup("alice"), await a.signup("bob")
    room_id = (await a.create_room(alice, bob))["id"]
    alice_on_a = await Socket(nodes.servers[0].url, alice.token).connect()
    bob_on_b = await Socket(nodes.servers[1].url, bob.token).connect()
    sockets += [alice_on_a, bob_on_b]
    await alice_on_a.wait_for("presence", lambda p: p == {"user_id": bob.id, "online": True})

    assert (await bob_on_b.call("typing", {"room_id": room_id, "is_typing": True}))["ok"]
    await alice_on_a.wait_for("typing", lambda e: e["user_id"] == bob.id, timeout=15)

    r = await a.send(alice, room_id, "to be edited")
    message = r.json()["message"]
    [stored] = await bob_on_b.wait_for(
        "message:new", lambda m: m["id"] == message["id"], timeout=15
    )
    ack = await bob_on_b.call("delivered", {"room_id": room_id, "seq": stored["seq"]})
    assert ack == {"ok": True}
    await alice_on_a.wait_for(
        "receipt", lambda e: e["user_id"] == bob.id and e["kind"] == "delivered", timeout=15
    )
    path = f"/api/v1/rooms/{room_id}/messages/{message['id']}"
    r = await a.http.patch(path, json={"body": "edited"}, headers=alice.headers)
    assert r.status_code == 200, r.text
    await bob_on_b.wait_for("message:updated", lambda m: m["id"] == message["id"], timeout=15)
    r = await a.http.delete(path, headers=alice.headers)
    assert r.status_code in (200, 204), r.text
    await bob_on_b.wait_for("message:deleted", lambda m: m["id"] == message["id"], timeout=15)

    await bob_on_b.disconnect()
    await alice_on_a.wait_for("presence", lambda p: p == {"user_id": bob.id, "online": False})
