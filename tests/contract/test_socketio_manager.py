"""One contract for every socket.io client manager: python-socketio's local manager and our
supervised Redis manager, on real AsyncServers behind hypercorn with real websocket clients.

With "redis" the events under test are emitted by a *second* server on the same channel, so
every assertion also covers the cross-node path; each test gets its own channel name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis
import socketio

from chat_adapters.socketio.fan_out import InlineFanOutManager
from chat_adapters.socketio.notifier import SocketIONotifier
from chat_adapters.socketio.redis_manager import (
    LISTENER_RESTARTS,
    PUBLISH_FAILURES,
    SupervisedRedisManager,
)
from chat_domain.errors import Unavailable
from chat_domain.ports.notifier import Notification
from tests.support.clients import Socket
from tests.support.processes import free_port
from tests.support.services import REDIS, require
from tests.support.socketio_node import SocketIONode

WAIT = 10.0
log = logging.getLogger("tests.socketio")


class Node(SocketIONode):
    """The shared test node; it also closes its Redis manager, which the suite made for it."""

    async def close(self) -> None:
        await super().close()
        if isinstance(self.manager, SupervisedRedisManager):
            await self.manager.close()


@dataclass
class Cluster:
    kind: str
    channel: str
    nodes: list[Node] = field(default_factory=list)
    sockets: list[Socket] = field(default_factory=list)
    extra: list[SupervisedRedisManager] = field(default_factory=list)

    def manager(self, **options: Any) -> socketio.AsyncManager:
        if self.kind == "local":
            return InlineFanOutManager()
        manager = SupervisedRedisManager(REDIS.url, channel=self.channel, logger=log, **options)
        if options.get("write_only"):
            self.extra.append(manager)
        return manager

    async def node(self, **options: Any) -> Node:
        node = await Node(self.manager(**options)).start()
        self.nodes.append(node)
        return node

    async def connect(self, node: Node, user: str, *rooms: str) -> Socket:
        s = Socket(node.url, user)
        await s.client.connect(
            node.url,
            auth={"token": user, "rooms": list(rooms)},
            transports=["websocket"],
            wait_timeout=10,
        )
        self.sockets.append(s)
        await self.subscribed()
        return s

    async def subscribed(self) -> None:
        """Until every listening node's Redis listener is subscribed (it starts on the node's
        first client): an emit published before that is lost, pub/sub being at-most-once."""
        if self.kind == "local":
            return
        listening = sum(1 for n in self.nodes if n.sio.manager_initialized)
        async with aioredis.from_url(REDIS.url) as r, asyncio.timeout(WAIT):
            while (await r.pubsub_numsub(self.channel))[0][1] < listening:  # noqa: ASYNC110
                await asyncio.sleep(0.02)

    async def close(self) -> None:
        for s in self.sockets:
            with contextlib.suppress(Exception):
                await s.disconnect()
        for n in self.nodes:
            await n.close()
        for m in self.extra:
            await m.close()


@pytest.fixture(params=["local", "redis"])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    if request.param == "redis":
        require(REDIS)
    c = Cluster(request.param, channel=f"test-sio-{uuid.uuid4().hex[:12]}")
    yield c
    await c.close()


async def emitter_and_home(cluster: Cluster) -> tuple[Node, Node]:
    """Where events are emitted from, and where the clients sit: one node with "local",
    two nodes on one channel with "redis" (so the pub/sub path is what is tested)."""
    home = await cluster.node()
    return (await cluster.node() if cluster.kind == "redis" else home), home


async def watch_every_channel(pubsub: aioredis.client.PubSub, channel: str) -> None:
    """Subscribe to the shared channel and to every node's own one."""
    await pubsub.subscribe(channel)
    await pubsub.psubscribe(f"{channel}:node:*")


async def no_more(sockets: list[Socket], emit: Callable[[str], Any]) -> None:
    """Flush: emit a marker to everyone and wait for it; what each socket got before the
    marker is everything it will get of what was emitted before (order is per socket)."""
    marker = uuid.uuid4().hex
    await emit(marker)
    for s in sockets:
        await s.wait_for("marker", lambda m: m == marker, timeout=WAIT)


async def test_emit_to_user_rooms_reaches_exactly_their_sockets_once(cluster: Cluster) -> None:
    source, home = await emitter_and_home(cluster)
    a1 = await cluster.connect(home, "a", "team")
    a2 = await cluster.connect(home, "a")
    b = await cluster.connect(home, "b", "team")
    c = await cluster.connect(home, "c")

    # a1 is in both user:a and team: it must get the event once, not twice.
    await source.sio.emit("hello", {"n": 1}, room=["user:a", "user:b", "team"])
    await source.sio.emit("hello", {"n": 2}, room=["user:c"])
    await no_more(
        [a1, a2, b, c],
        lambda m: source.sio.emit("marker", m, room=["user:a", "user:b", "user:c"]),
    )
    assert a1.events["hello"] == [{"n": 1}]
    assert a2.events["hello"] == [{"n": 1}]
    assert b.events["hello"] == [{"n": 1}]
    assert c.events["hello"] == [{"n": 2}]


async def test_skip_sid_leaves_out_that_socket_only(cluster: Cluster) -> None:
    source, home = await emitter_and_home(cluster)
    a1, a2 = await cluster.connect(home, "a"), await cluster.connect(home, "a")
    await source.sio.emit("hello", "x", room=["user:a"], skip_sid=a1.client.get_sid())
    await no_more([a1, a2], lambda m: source.sio.emit("marker", m, room=["user:a"]))
    assert a1.events["hello"] == []
    assert a2.events["hello"] == ["x"]


async def test_a_socket_that_goes_leaves_every_room_it_was_in_and_no_other(
    cluster: Cluster,
) -> None:
    """The managers index each socket's rooms (a disconnect does not scan every room)."""
    source, home = await emitter_and_home(cluster)
    a = await cluster.connect(home, "a", "team", "ops")
    b = await cluster.connect(home, "b", "team", "night")
    manager = home.sio.manager
    sid_a, sid_b = a.client.get_sid(), b.client.get_sid()
    assert set(manager.get_rooms(sid_a, "/")) == {sid_a, "user:a", "team", "ops"}
    await home.sio.leave_room(sid_b, "night")
    assert set(manager.get_rooms(sid_b, "/")) == {sid_b, "user:b", "team"}

    await a.disconnect()
    assert await asyncio.wait_for(home.disconnected.get(), WAIT) == sid_a
    await no_more([b], lambda m: source.sio.emit("marker", m, room=["team"]))
    assert manager.get_rooms(sid_a, "/") == []
    rooms = manager.rooms["/"]
    assert all(sid_a not in members for members in rooms.values())
    assert "ops" not in rooms and "night" not in rooms  # emptied rooms are dropped
    assert set(rooms["team"]) == {sid_b}
    assert set(manager.get_rooms(sid_b, "/")) == {sid_b, "user:b", "team"}


async def test_notifications_sent_together_arrive_in_order_each_once(cluster: Cluster) -> None:
    source, home = await emitter_and_home(cluster)
    a, b = await cluster.connect(home, "a"), await cluster.connect(home, "b")
    # What a worker storing a batch does: a write-only manager across nodes, else the server.
    emitter = cluster.manager(write_only=True) if cluster.kind == "redis" else source.sio
    published: list[Any] = []
    async with contextlib.AsyncExitStack() as stack:
        if cluster.kind == "redis":  # watch the channels: how many pub/sub messages go out
            pubsub = (await stack.enter_async_context(aioredis.from_url(REDIS.url))).pubsub()
            await watch_every_channel(pubsub, cluster.channel)
        await SocketIONotifier(emitter).emit_many(
            [
                *(Notification(("a", "b"), "hello", {"n": n}) for n in range(5)),
                Notification(("a",), "hello", {"n": 5}),
                Notification((), "hello", {"n": 6}),  # nobody: nothing to send
            ]
        )
        await no_more([a, b], lambda m: source.sio.emit("marker", m, room=["user:a", "user:b"]))
        if cluster.kind == "redis":
            async with asyncio.timeout(WAIT):
                while len(published) < 2:  # the batch, then the marker
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                    if message is not None:
                        published.append(message)
            await pubsub.aclose()
    assert a.events["hello"] == [{"n": n} for n in range(6)]
    assert b.events["hello"] == [{"n": n} for n in range(5)]
    if cluster.kind == "redis":
        assert b'"marker"' in published[1]["data"]  # so the six went out in one message


# --- Redis only: several nodes, the worker's write-only manager, supervision ------------


redis_only = pytest.mark.parametrize("cluster", ["redis"], indirect=True)


@pytest.fixture
async def redis_cluster(cluster: Cluster) -> Cluster:
    assert cluster.kind == "redis", "mark the test @redis_only"
    return cluster


@redis_only
async def test_an_emit_on_one_node_reaches_clients_on_every_node(redis_cluster: Cluster) -> None:
    a_node, b_node = await redis_cluster.node(), await redis_cluster.node()
    on_a, on_b = await redis_cluster.connect(a_node, "u"), await redis_cluster.connect(b_node, "u")
    await a_node.sio.emit("hello", "from a", room=["user:u"])
    for s in (on_a, on_b):
        assert await s.wait_for("hello", timeout=WAIT) == ["from a"]


@redis_only
async def test_a_write_only_manager_reaches_clients_on_every_node(redis_cluster: Cluster) -> None:
    a_node, b_node = await redis_cluster.node(), await redis_cluster.node()
    on_a, on_b = await redis_cluster.connect(a_node, "u"), await redis_cluster.connect(b_node, "v")
    worker = redis_cluster.manager(write_only=True)
    await worker.emit("hello", {"from": "worker"}, namespace="/", room=["user:u", "user:v"])
    for s in (on_a, on_b):
        assert await s.wait_for("hello", timeout=WAIT) == [{"from": "worker"}]


@redis_only
async def test_a_write_only_publish_failure_raises_and_is_counted(redis_cluster: Cluster) -> None:
    nowhere = SupervisedRedisManager(
        f"redis://127.0.0.1:{free_port()}/0", channel=redis_cluster.channel, write_only=True
    )
    before = PUBLISH_FAILURES.labels(redis_cluster.channel)._value.get()
    try:
        with pytest.raises(Unavailable):
            await nowhere.emit("hello", "lost", namespace="/", room=["user:u"])
        with pytest.raises(Unavailable):
            await nowhere.check()
    finally:
        await nowhere.close()
    assert PUBLISH_FAILURES.labels(redis_cluster.channel)._value.get() == before + 1


async def kill_listener_connections(manager: SupervisedRedisManager) -> int:
    """Kill this manager's pub/sub connections only (by client name), not other tests'."""
    name = manager.redis_options["client_name"]
    killed = 0
    async with aioredis.from_url(REDIS.url) as r:
        for client in await r.client_list(_type="pubsub"):
            if client.get("name") == name:
                killed += await r.execute_command(
                    "CLIENT", "KILL", "ID", client["id"], "SKIPME", "yes"
                )
    return killed


async def delivered_after_recovery(
    sender: Node, receiver: Socket, manager: SupervisedRedisManager
) -> None:
    """Probe until the listener is healthy again, then an emit from the other node arrives."""
    async with asyncio.timeout(WAIT):
        while True:
            await manager.probe()
            try:
                await manager.check()
                break
            except Unavailable:
                continue
    token = uuid.uuid4().hex
    await sender.sio.emit("hello", token, room=["user:u"])
    await receiver.wait_for("hello", lambda t: t == token, timeout=WAIT)


@redis_only
async def test_the_listener_recovers_when_redis_drops_its_connection(
    redis_cluster: Cluster,
) -> None:
    a_node, b_node = await redis_cluster.node(), await redis_cluster.node()
    on_b = await redis_cluster.connect(b_node, "u")
    await redis_cluster.connect(a_node, "x")
    manager = b_node.manager
    assert isinstance(manager, SupervisedRedisManager)
    assert await kill_listener_connections(manager) == 1
    await delivered_after_recovery(a_node, on_b, manager)
    # ...and it is subscribed exactly once again (no leaked or doubled subscription).
    await redis_cluster.subscribed()
    async with aioredis.from_url(REDIS.url) as r:
        assert (await r.pubsub_numsub(redis_cluster.channel))[0][1] == 2


@redis_only
async def test_a_dead_listener_is_reported_then_restarted(redis_cluster: Cluster) -> None:
    a_node, b_node = await redis_cluster.node(), await redis_cluster.node()
    on_b = await redis_cluster.connect(b_node, "u")
    manager = b_node.manager
    assert isinstance(manager, SupervisedRedisManager)
    await manager.check()  # healthy to begin with
    restarts = LISTENER_RESTARTS.labels(redis_cluster.channel)._value.get()

    # The silent death of python-socketio#1581: the listener task is simply gone.
    assert manager.thread is not None
    manager.thread.cancel()
    await asyncio.gather(manager.thread, return_exceptions=True)
    with pytest.raises(Unavailable, match="stopped"):
        await manager.check()

    await delivered_after_recovery(a_node, on_b, manager)
    assert LISTENER_RESTARTS.labels(redis_cluster.channel)._value.get() == restarts + 1


@redis_only
async def test_the_supervisor_restarts_a_dead_listener_by_itself(redis_cluster: Cluster) -> None:
    a_node = await redis_cluster.node()
    b_node = await redis_cluster.node(probe_interval=0.2, probe_timeout=1.0)
    on_b = await redis_cluster.connect(b_node, "u")
    manager = b_node.manager
    assert isinstance(manager, SupervisedRedisManager) and manager.thread is not None
    dead = manager.thread
    dead.cancel()
    async with asyncio.timeout(WAIT):  # the background supervisor notices and restarts it
        while manager.thread is dead or manager.thread is None or manager.thread.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    await redis_cluster.subscribed()
    token = uuid.uuid4().hex
    await a_node.sio.emit("hello", token, room=["user:u"])
    await on_b.wait_for("hello", lambda t: t == token, timeout=WAIT)


@redis_only
async def test_an_emit_to_a_socket_of_this_node_is_delivered_and_not_published(
    redis_cluster: Cluster,
) -> None:
    """Every other node would read such an emit only to drop it (the presence list a socket
    gets on connecting is one per online room mate: n² pub/sub messages for n members)."""
    home, other = await redis_cluster.node(), await redis_cluster.node()
    on_home = await redis_cluster.connect(home, "u")
    on_other = await redis_cluster.connect(other, "u")
    async with aioredis.from_url(REDIS.url) as r:
        pubsub = r.pubsub()
        await watch_every_channel(pubsub, redis_cluster.channel)
        await home.sio.emit("hello", "direct", to=on_home.client.get_sid())
        assert await on_home.wait_for("hello", timeout=WAIT) == ["direct"]
        await home.sio.emit("hello", "room", room="user:u")  # a room may span nodes
        assert await on_other.wait_for("hello", timeout=WAIT) == ["room"]
        async with asyncio.timeout(WAIT):
            message = None
            while message is None:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        await pubsub.aclose()
    assert json.loads(message["data"])["data"] == ["room"]  # the first out is the room emit
    assert on_home.events["hello"] == ["direct", "room"]


# --- Redis only: targeted delivery (a node reads only the events it has a socket for) ----


def manager_of(node: Node) -> SupervisedRedisManager:
    assert isinstance(node.manager, SupervisedRedisManager)
    return node.manager


async def nodes_listed(manager: SupervisedRedisManager, room: str) -> set[str]:
    async with aioredis.from_url(REDIS.url, decode_responses=True) as r:
        return set(await r.smembers(manager.directory.key(("/", room))))


async def until_listed(manager: SupervisedRedisManager, room: str, nodes: set[str]) -> None:
    async with asyncio.timeout(WAIT):
        while await nodes_listed(manager, room) != nodes:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


@redis_only
async def test_an_emit_to_a_user_is_read_only_by_the_node_holding_them(
    redis_cluster: Cluster,
) -> None:
    a_node, b_node = await redis_cluster.node(), await redis_cluster.node()
    u = await redis_cluster.connect(a_node, "u")
    v = await redis_cluster.connect(b_node, "v")
    a, b = manager_of(a_node), manager_of(b_node)
    a_before, b_before = a.traffic.events_received, b.traffic.events_received
    worker = redis_cluster.manager(write_only=True)

    await worker.emit("hello", "only u", namespace="/", room=["user:u"])
    await no_more(
        [u, v], lambda m: worker.emit("marker", m, namespace="/", room=["user:u", "user:v"])
    )
    assert u.events["hello"] == ["only u"] and v.events["hello"] == []
    assert a.traffic.events_received - a_before == 2
    assert b.traffic.events_received - b_before == 1  # the marker, not u's event


@redis_only
async def test_a_batch_reaches_each_node_as_one_message_with_only_its_events(
    redis_cluster: Cluster,
) -> None:
    a_node, b_node = await redis_cluster.node(), await redis_cluster.node()
    u = await redis_cluster.connect(a_node, "u")
    v = await redis_cluster.connect(b_node, "v")
    a, b = manager_of(a_node), manager_of(b_node)
    worker = redis_cluster.manager(write_only=True)
    async with aioredis.from_url(REDIS.url) as r, r.pubsub() as pubsub:
        await watch_every_channel(pubsub, redis_cluster.channel)
        await SocketIONotifier(worker).emit_many(
            [
                Notification(("u",), "hello", {"n": 1}),
                Notification(("v",), "hello", {"n": 2}),
                Notification(("u", "v", "nobody"), "hello", {"n": 3}),
            ]
        )
        published: dict[str, Any] = {}
        async with asyncio.timeout(WAIT):
            while len(published) < 2:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    published[message["channel"].decode()] = json.loads(message["data"])
    assert set(published) == {a.node_channel(a.host_id), b.node_channel(b.host_id)}
    for manager, user, numbers in ((a, "u", [1, 3]), (b, "v", [2, 3])):
        emits = published[manager.node_channel(manager.host_id)]["emits"]
        assert [e["data"] for e in emits] == [[{"n": n}] for n in numbers]
        assert all(f"user:{user}" in e["room"] for e in emits)
    await u.wait_for("hello", count=2, timeout=WAIT)
    await v.wait_for("hello", count=2, timeout=WAIT)
    assert u.events["hello"] == [{"n": 1}, {"n": 3}]
    assert v.events["hello"] == [{"n": 2}, {"n": 3}]


@redis_only
async def test_a_user_who_moves_is_reached_on_the_new_node_only(redis_cluster: Cluster) -> None:
    a_node, b_node = await redis_cluster.node(), await redis_cluster.node()
    a, b = manager_of(a_node), manager_of(b_node)
    await redis_cluster.connect(a_node, "x")  # node A keeps listening
    u_on_a = await redis_cluster.connect(a_node, "u")
    await u_on_a.disconnect()
    await until_listed(a, "user:u", set())  # the last socket of u on A went: A unlisted
    u_on_b = await redis_cluster.connect(b_node, "u")
    assert await nodes_listed(a, "user:u") == {b.host_id}  # listed before connect returned

    a_before = a.traffic.events_received
    worker = redis_cluster.manager(write_only=True)
    await worker.emit("hello", "moved", namespace="/", room=["user:u"])
    assert await u_on_b.wait_for("hello", timeout=WAIT) == ["moved"]
    assert a.traffic.events_received == a_before


@redis_only
async def test_a_second_socket_keeps_the_node_listed_when_the_first_goes(
    redis_cluster: Cluster,
) -> None:
    source, home = await redis_cluster.node(), await redis_cluster.node()
    first = await redis_cluster.connect(home, "u")
    second = await redis_cluster.connect(home, "u")
    sid = first.client.get_sid()
    await first.disconnect()
    assert await asyncio.wait_for(home.disconnected.get(), WAIT) == sid
    await source.sio.emit("hello", "still here", room=["user:u"])
    assert await second.wait_for("hello", timeout=WAIT) == ["still here"]
    assert await nodes_listed(manager_of(home), "user:u") == {manager_of(home).host_id}


@redis_only
async def test_a_crashed_node_s_listing_is_dropped_by_the_next_lookup(
    redis_cluster: Cluster,
) -> None:
    home = await redis_cluster.node()
    u = await redis_cluster.connect(home, "u")
    manager = manager_of(home)
    async with aioredis.from_url(REDIS.url) as r:
        await r.sadd(manager.directory.key(("/", "user:u")), "crashed-node")  # no lease
    worker = redis_cluster.manager(write_only=True)
    await worker.emit("hello", "after the crash", namespace="/", room=["user:u"])
    assert await u.wait_for("hello", timeout=WAIT) == ["after the crash"]
    assert await nodes_listed(manager, "user:u") == {manager.host_id}
    assert worker.traffic.messages_published == 1  # to the live node only


@redis_only
async def test_a_node_whose_listing_was_lost_lists_itself_again(redis_cluster: Cluster) -> None:
    """Redis restarted without its data, or the node stalled past its lease."""
    source, home = await redis_cluster.node(), await redis_cluster.node()
    u = await redis_cluster.connect(home, "u")
    manager = manager_of(home)
    async with aioredis.from_url(REDIS.url) as r:
        keys = [k async for k in r.scan_iter(f"{redis_cluster.channel}:*")]
        assert keys
        await r.delete(*keys)
    await manager.directory.renew()  # what the supervisor does every probe interval
    await until_listed(manager, "user:u", {manager.host_id})
    await source.sio.emit("hello", "found again", room=["user:u"])
    assert await u.wait_for("hello", timeout=WAIT) == ["found again"]


@redis_only
async def test_untargeted_publishers_and_broadcasts_still_reach_every_node(
    redis_cluster: Cluster,
) -> None:
    """A worker not yet upgraded (or targeted delivery off) publishes to every node."""
    a_node, b_node = await redis_cluster.node(), await redis_cluster.node()
    u, v = await redis_cluster.connect(a_node, "u"), await redis_cluster.connect(b_node, "v")
    old_worker = redis_cluster.manager(write_only=True, targeted=False)
    await old_worker.emit("hello", "old", namespace="/", room=["user:u", "user:v"])
    await a_node.sio.emit("hello", "everyone")  # no room: a broadcast
    for s in (u, v):
        await s.wait_for("hello", count=2, timeout=WAIT)
        assert sorted(s.events["hello"]) == ["everyone", "old"]
