"""One contract for every PresenceTracker: in-process and Redis (several nodes, one Redis).

Each Redis test uses its own key prefix. "Nodes" are tracker instances: with Redis they
share state like separate processes would; the in-memory tracker is one process, so its
"nodes" are the same instance.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from chat_adapters.memory.presence import InMemoryPresenceTracker
from chat_adapters.redis.presence import RedisPresenceTracker
from chat_domain.errors import Unavailable
from chat_domain.ports.presence import PresenceTracker
from tests.support.processes import free_port
from tests.support.services import REDIS, require

Nodes = Callable[..., PresenceTracker]


@pytest.fixture(params=["memory", "redis"])
async def node(request: pytest.FixtureRequest) -> AsyncIterator[Nodes]:
    """``node()`` is a tracker for one more server node (``lease_seconds=`` for Redis)."""
    made: list[PresenceTracker] = []
    if request.param == "memory":
        shared = InMemoryPresenceTracker()
        made.append(shared)
        yield lambda **_: shared
    else:
        require(REDIS)
        prefix = f"test-presence-{uuid.uuid4().hex[:12]}"

        def make(**options: float) -> PresenceTracker:
            tracker = RedisPresenceTracker(REDIS.url, prefix=prefix, **options)
            made.append(tracker)
            return tracker

        yield make
    for tracker in made:
        await tracker.close()


async def test_first_in_and_last_out_are_the_only_edges(node: Nodes) -> None:
    p = node()
    assert await p.socket_connected("u", "s1") is True
    assert await p.socket_connected("u", "s2") is False
    assert await p.online(["u", "v"]) == {"u"}
    assert await p.socket_disconnected("u", "s1") is False
    assert await p.online(["u"]) == {"u"}
    assert await p.socket_disconnected("u", "s2") is True
    assert await p.online(["u"]) == set()


async def test_unknown_and_repeated_disconnects_are_no_edge(node: Nodes) -> None:
    p = node()
    assert await p.socket_disconnected("u", "ghost") is False
    await p.socket_connected("u", "s1")
    assert await p.socket_disconnected("u", "s1") is True
    assert await p.socket_disconnected("u", "s1") is False


async def test_a_user_with_sockets_on_two_nodes_is_online_until_both_leave(node: Nodes) -> None:
    a, b = node(), node()
    assert await a.socket_connected("u", "s-a") is True
    assert await b.socket_connected("u", "s-b") is False
    assert await a.socket_disconnected("u", "s-a") is False
    assert await b.online(["u"]) == {"u"}
    assert await b.socket_disconnected("u", "s-b") is True
    assert await a.online(["u"]) == set()


async def test_racing_connects_and_disconnects_cross_each_edge_once(node: Nodes) -> None:
    nodes = [node(), node(), node()]
    sockets = [(nodes[i % 3], f"s{i}") for i in range(30)]
    came = await asyncio.gather(*(n.socket_connected("u", s) for n, s in sockets))
    assert sum(came) == 1
    went = await asyncio.gather(*(n.socket_disconnected("u", s) for n, s in sockets))
    assert sum(went) == 1
    assert await nodes[0].online(["u"]) == set()


async def test_online_of_many_users_and_of_none(node: Nodes) -> None:
    p = node()
    for user in ("a", "b", "c"):
        await p.socket_connected(user, f"{user}-1")
    assert await p.online(["a", "c", "x", "a"]) == {"a", "c"}
    assert await p.online([]) == set()
    await p.check()


# In memory there is one process: its sockets die with it. Leases are Redis's alone.
@pytest.mark.parametrize("node", ["redis"], indirect=True)
async def test_a_crashed_nodes_sockets_expire_with_its_lease(node: Nodes) -> None:
    crashed = node(lease_seconds=0.3)
    survivor = node()
    await crashed.socket_connected("u", "s-crashed")
    assert isinstance(crashed, RedisPresenceTracker)
    crashed._heartbeat.cancel()  # type: ignore[union-attr]  # the node dies: no more renewals
    async with asyncio.timeout(5):
        while await survivor.online(["u"]):  # noqa: ASYNC110 - state in Redis
            await asyncio.sleep(0.05)
    # The user comes back on another node: that is a fresh "online" edge.
    assert await survivor.socket_connected("u", "s-new") is True


async def test_check_fails_when_redis_does_not_answer() -> None:
    tracker = RedisPresenceTracker(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(Unavailable):
            await tracker.check()
        with pytest.raises(Unavailable):
            await tracker.socket_connected("u", "s1")
    finally:
        await tracker.close()
