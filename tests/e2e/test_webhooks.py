"""Webhooks from a real `chat serve` (embedded) and a real `chat worker` (RabbitMQ + Redis)
to a receiver this test runs on loopback, verifying signatures with the reference library."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.clients import Api, Socket
from tests.support.cluster import Cluster, cluster
from tests.support.metrics import scrape, wait_for_sample
from tests.support.processes import ChatProcess, chat_serve
from tests.support.services import POSTGRES, RABBITMQ, REDIS, require
from tests.support.tcp_proxy import TcpProxy, tcp_proxy
from tests.support.webhook_receiver import Receiver

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
WAIT = 30.0


def webhook_env(receiver: Receiver, **more: str) -> dict[str, str]:
    return {
        "CHAT_WEBHOOK_URLS": receiver.url,
        "CHAT_WEBHOOK_SECRET": SECRET,
        "CHAT_WEBHOOK_RETRY_BASE_SECONDS": "0.05",
        "CHAT_WEBHOOK_RETRY_MAX_SECONDS": "0.5",
    } | more


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver(SECRET)
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[list[ChatProcess]]:
    """Servers started by the test (each needs the receiver's URL); stopped cleanly after."""
    started: list[ChatProcess] = []
    yield started
    for process in started:
        code = process.stop()
        assert code == 0, f"server did not stop cleanly ({code}):\n{process.log()}"


async def test_an_embedded_server_posts_every_event_signed_in_room_order(
    tmp_path: Path, receiver: Receiver, served: list[ChatProcess]
) -> None:
    server = chat_serve(tmp_path, webhook_env(receiver)).start()
    served.append(server)
    api = Api(server.url)
    bob_socket: Socket | None = None
    try:
        alice, bob, carol, dave = [await api.signup(n) for n in ("alice", "bob", "carol", "dave")]
        room = await api.create_room(alice, bob, carol)
        bob_socket = await Socket(server.url, bob.token).connect()  # online: no push for him
        sent = [(await api.send(alice, room["id"], f"m{i}")).json()["message"] for i in range(5)]
        await bob_socket.wait_for("message:new", count=5)
        first = sent[0]["id"]
        edit = await api.http.patch(
            f"/api/v1/rooms/{room['id']}/messages/{first}",
            json={"body": "m0!"},
            headers=alice.headers,
        )
        assert edit.status_code == 200
        delete = await api.http.delete(
            f"/api/v1/rooms/{room['id']}/messages/{first}", headers=alice.headers
        )
        assert delete.status_code == 204
        added = await api.http.post(
            f"/api/v1/rooms/{room['id']}/members", json={"user_id": dave.id}, headers=alice.headers
        )
        assert added.status_code == 201
        removed = await api.http.delete(
            f"/api/v1/rooms/{room['id']}/members/{dave.id}", headers=alice.headers
        )
        assert removed.status_code == 204

        await receiver.until(lambda: len(receiver.received) >= 17, WAIT)
        metrics = await scrape(server.url)
    finally:
        if bob_socket is not None:
            await bob_socket.disconnect()
        await api.close()

    assert receiver.unverified == 0
    assert [r.type for r in receiver.received] == [
        *["member.added"] * 3,  # the room's creation: Alice, Bob, Carol
        *["message.new", "message.unread"] * 5,
        "message.updated",
        "message.deleted",
        "member.added",
        "member.removed",
    ]
    news = [r.data for r in receiver.received if r.type == "message.new"]
    assert [(m["id"], m["seq"], m["body"]) for m in news] == [
        (m["id"], i + 1, f"m{i}") for i, m in enumerate(sent)
    ]
    unread = [r.data for r in receiver.received if r.type == "message.unread"]
    assert {tuple(u["user_ids"]) for u in unread} == {(carol.id,)}
    assert len(receiver.unique_ids()) == len(receiver.received)
    assert metrics['chat_webhook_attempts_total{outcome="delivered"}'] == 17
    assert metrics['chat_webhook_events_announced_total{type="message.unread"}'] == 5


async def test_a_receiver_that_never_answers_gets_dead_letters_and_chat_still_flows(
    tmp_path: Path, served: list[ChatProcess]
) -> None:
    receiver = Receiver(SECRET, mode="hang")
    await receiver.start()
    env = webhook_env(receiver, CHAT_WEBHOOK_TIMEOUT_SECONDS="0.3", CHAT_WEBHOOK_MAX_ATTEMPTS="2")
    server = chat_serve(tmp_path, env).start()
    served.append(server)
    api = Api(server.url)
    try:
        alice, bob = await api.signup("alice"), await api.signup("bob")
        room = await api.create_room(alice, bob)
        bob_socket = await Socket(server.url, bob.token).connect()
        try:
            for i in range(10):
                assert (await api.send(alice, room["id"], f"m{i}")).status_code == 202
            # Every message reaches the socket while its webhooks wait out their timeouts.
            got = await bob_socket.wait_for("message:new", count=10, timeout=WAIT)
            assert [m["seq"] for m in got] == list(range(1, 11))
        finally:
            await bob_socket.disconnect()
        # 10 message.new (none unread: Bob was online), each tried twice, in order: the
        # room moved on from each of the first nine only once it was set aside.
        await receiver.until(
            lambda: len(receiver.attempts) == 10 and set(receiver.attempts.values()) == {2}, WAIT
        )
        metrics = await scrape(server.url)
        assert metrics["chat_webhook_events_dead_lettered_total"] >= 9
        assert metrics['chat_webhook_attempts_total{outcome="refused"}'] >= 19
        assert metrics['chat_webhook_events_announced_total{type="message.new"}'] == 10
    finally:
        await api.close()
        await receiver.stop()
    assert receiver.received == []


@pytest.fixture
def distributed(tmp_path: Path) -> Iterator[tuple[Cluster, Receiver]]:
    """A server and a worker on RabbitMQ, Redis and PostgreSQL, posting to a receiver that
    is not listening yet (the test starts it)."""
    require(RABBITMQ), require(REDIS), require(POSTGRES)
    receiver = Receiver(SECRET, mode="refuse")
    with cluster(tmp_path, servers=1, workers=1, overrides=webhook_env(receiver)) as c:
        yield c, receiver


@pytest.mark.postgres
async def test_a_worker_delivers_through_rabbitmq_once_the_receiver_is_back(
    distributed: tuple[Cluster, Receiver],
) -> None:
    c, receiver = distributed
    api = Api(c.servers[0].url)
    try:
        alice, bob = await api.signup("alice"), await api.signup("bob")
        room = await api.create_room(alice, bob)
        # Down (nothing listens), then up but refusing (503), then well.
        sent = [
            (await api.send(alice, room["id"], f"m{i}")).json()["message"]["id"] for i in range(5)
        ]
        await receiver.start()
        await receiver.until(lambda: receiver.refused >= 5, WAIT)
        receiver.mode = "accept"
        # The room's creation (2 member.added), then 5 message.new and 5 message.unread.
        await receiver.until(lambda: len(receiver.unique_ids()) >= 12, WAIT)
    finally:
        await api.close()
        await receiver.stop()
    news = [r for r in receiver.received if r.type == "message.new"]
    assert list(dict.fromkeys(r.data["id"] for r in news)) == sent
    # Bob never connected: each message is an unread push for him (presence in Redis).
    unread = [r for r in receiver.received if r.type == "message.unread"]
    assert {tuple(r.data["user_ids"]) for r in unread} == {(bob.id,)}
    assert receiver.unverified == 0


@pytest.fixture
def server_behind_a_proxy(
    tmp_path: Path,
) -> Iterator[tuple[Cluster, ChatProcess, TcpProxy, Receiver]]:
    """A worker on RabbitMQ, Redis and PostgreSQL, and a server that reaches RabbitMQ
    (its broker and the webhook outbox) only through a proxy the test cuts and restores."""
    require(RABBITMQ), require(REDIS), require(POSTGRES)
    receiver = Receiver(SECRET)
    host, port = RABBITMQ.url.rsplit("@", 1)[1].split("/", 1)[0].split(":")
    env = webhook_env(receiver, CHAT_WEBHOOK_RELAY_INTERVAL_SECONDS="0.5")
    with (
        tcp_proxy(host, int(port)) as proxy,
        cluster(tmp_path, servers=0, workers=1, overrides=env) as c,
    ):
        c.overrides["CHAT_RABBITMQ_URL"] = RABBITMQ.url.replace(
            f"@{host}:{port}/", f"@127.0.0.1:{proxy.port}/"
        )
        server = c.add_server()
        yield c, server, proxy, receiver


@pytest.mark.postgres
async def test_changes_made_while_rabbitmq_is_unreachable_are_all_announced_once_it_is_back(
    server_behind_a_proxy: tuple[Cluster, ChatProcess, TcpProxy, Receiver],
) -> None:
    _, server, proxy, receiver = server_behind_a_proxy
    await receiver.start()
    api = Api(server.url)
    try:
        alice, bob, carol = [await api.signup(n) for n in ("alice", "bob", "carol")]
        room = (await api.create_room(alice, bob))["id"]
        sent = [(await api.send(alice, room, f"m{i}")).json()["message"] for i in range(2)]
        # The room's creation (2 member.added), then 2 message.new and 2 message.unread.
        await receiver.until(lambda: len(receiver.unique_ids()) >= 6, WAIT)

        proxy.cut()  # RabbitMQ is unreachable from the server (the worker still delivers)
        rooms = f"/api/v1/rooms/{room}"
        changes = [
            await api.http.patch(
                f"{rooms}/messages/{sent[0]['id']}", json={"body": "m0!"}, headers=alice.headers
            ),
            await api.http.delete(f"{rooms}/messages/{sent[1]['id']}", headers=alice.headers),
            await api.http.post(
                f"{rooms}/members", json={"user_id": carol.id}, headers=alice.headers
            ),
            await api.http.delete(f"{rooms}/members/{carol.id}", headers=alice.headers),
        ]
        assert [r.status_code for r in changes] == [200, 204, 201, 204]
        other = (await api.create_room(bob, carol))["id"]  # a new room: 2 member.added
        # They wait in the database, which the server's metrics show.
        await wait_for_sample(server.url, "chat_webhook_outbox_pending", lambda n: n == 6, WAIT)
        assert len(receiver.unique_ids()) == 6  # nothing of them got through meanwhile

        proxy.restore()
        await receiver.until(lambda: len(receiver.unique_ids()) >= 12, WAIT)
        await wait_for_sample(server.url, "chat_webhook_outbox_pending", lambda n: n == 0, WAIT)
    finally:
        await api.close()
        await receiver.stop()

    assert receiver.unverified == 0
    first = {r.id: r for r in reversed(receiver.received)}  # each id's first arrival
    in_room = [first[i] for i in receiver.unique_ids() if first[i].room_id == room]
    assert [r.type for r in in_room] == [
        "member.added",
        "member.added",
        *["message.new", "message.unread"] * 2,
        "message.updated",
        "message.deleted",
        "member.added",
        "member.removed",
    ]
    updated, deleted, added, removed = (r.data for r in in_room[-4:])
    assert (updated["id"], updated["body"]) == (sent[0]["id"], "m0!")
    assert deleted == {"room_id": room, "id": sent[1]["id"], "seq": 2}
    assert added == {"room_id": room, "user_id": carol.id, "by": alice.id}
    assert removed == {"room_id": room, "user_id": carol.id, "by": alice.id}
    in_other = [first[i] for i in receiver.unique_ids() if first[i].room_id == other]
    assert sorted(r.data["user_id"] for r in in_other) == sorted([bob.id, carol.id])
    # A duplicate (a relay cut between the outbox's confirm and the delete) has its id
    # and its content: the receiver's dedupe by id drops it.
    for r in receiver.received:
        assert (r.type, r.room_id, r.data) == (
            first[r.id].type,
            first[r.id].room_id,
            first[r.id].data,
        )
