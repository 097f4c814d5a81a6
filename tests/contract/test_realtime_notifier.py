"""Contract of the realtime notifier port: one set of asserts, run on every adapter.

- ``recording``: the in-memory notifier the use-case tests run on (what it recorded is what
  each user got), also behind the metered wrapper the container puts around every notifier;
- ``socketio-local``: ``SocketIONotifier`` on a socket.io server with the local manager,
  real websocket clients;
- ``socketio-redis-server``: the same on a second server node, clients on the first, one
  Redis channel between them (an emit of a server's socket event);
- ``socketio-redis-worker``: through a write-only Redis manager (a worker's fan-out).

The asserts see only the port and what each user's sockets received. The socket.io
managers' own behaviour (rooms, skip_sid, supervision) is tested in test_socketio_manager.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import pytest
import redis.asyncio as aioredis

from chat_adapters.memory.notifier import RecordingNotifier
from chat_adapters.metered import MeteredNotifier
from chat_adapters.socketio.fan_out import InlineFanOutManager
from chat_adapters.socketio.notifier import SocketIONotifier
from chat_adapters.socketio.redis_manager import SupervisedRedisManager
from chat_domain.ports.notifier import Notification, RealtimeNotifier
from tests.support.services import REDIS, require
from tests.support.socketio_node import WAIT, SocketIONode

Predicate = Callable[[Any], bool]


class Inbox(Protocol):
    """What one socket of one user received."""

    def events(self, event: str) -> list[Any]: ...

    async def wait_for(self, event: str, predicate: Predicate) -> None: ...


class Audience(Protocol):
    """An adapter under test, and the users' sockets it pushes to."""

    notifier: RealtimeNotifier

    async def connect(self, user: str) -> Inbox: ...

    async def close(self) -> None: ...


class RecordedInbox:
    def __init__(self, recorder: RecordingNotifier, user: str) -> None:
        self._recorder, self._user = recorder, user

    def events(self, event: str) -> list[Any]:
        return self._recorder.events_for(self._user, event)

    async def wait_for(self, event: str, predicate: Predicate) -> None:
        async with asyncio.timeout(WAIT):
            while not any(predicate(p) for p in self.events(event)):
                await self._recorder.wait_for(self._user, event, len(self.events(event)) + 1)


class RecordedAudience:
    def __init__(self, metered: bool) -> None:
        self.recorder = RecordingNotifier()
        self.notifier: RealtimeNotifier = (
            MeteredNotifier(self.recorder) if metered else self.recorder
        )

    async def connect(self, user: str) -> Inbox:
        return RecordedInbox(self.recorder, user)

    async def close(self) -> None:
        pass


class SocketInbox:
    def __init__(self, socket: Any) -> None:
        self._socket = socket

    def events(self, event: str) -> list[Any]:
        return list(self._socket.events[event])

    async def wait_for(self, event: str, predicate: Predicate) -> None:
        await self._socket.wait_for(event, predicate, timeout=WAIT)


class SocketIOAudience:
    """Clients on ``home``; the notifier emits through ``emitter`` (``home``'s server, another
    node's server, or a worker's write-only manager)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.channel = f"test-notifier-{uuid.uuid4().hex[:12]}"
        self.nodes: list[SocketIONode] = []
        self.managers: list[SupervisedRedisManager] = []
        self.notifier: RealtimeNotifier

    def _manager(self, **options: Any) -> Any:
        if self.kind == "socketio-local":
            return InlineFanOutManager()
        manager = SupervisedRedisManager(REDIS.url, channel=self.channel, **options)
        self.managers.append(manager)
        return manager

    async def start(self) -> SocketIOAudience:
        self.home = await SocketIONode(self._manager()).start()
        self.nodes.append(self.home)
        if self.kind == "socketio-local":
            self.notifier = SocketIONotifier(self.home.sio)
        elif self.kind == "socketio-redis-server":
            other = await SocketIONode(self._manager()).start()
            self.nodes.append(other)
            self.notifier = SocketIONotifier(other.sio)
        else:
            self.notifier = SocketIONotifier(self._manager(write_only=True))
        return self

    async def connect(self, user: str) -> Inbox:
        socket = await self.home.connect(user)
        await self._subscribed()
        return SocketInbox(socket)

    async def _subscribed(self) -> None:
        """Until the home node's Redis listener is subscribed (it starts with the node's
        first client): pub/sub is at most once, an emit published before would be lost."""
        if self.kind == "socketio-local":
            return
        async with aioredis.from_url(REDIS.url) as r, asyncio.timeout(WAIT):
            while (await r.pubsub_numsub(self.channel))[0][1] < 1:  # noqa: ASYNC110
                await asyncio.sleep(0.02)  # polling what Redis reports, not a guess

    async def close(self) -> None:
        for node in self.nodes:
            await node.close()
        for manager in self.managers:
            await manager.close()


ADAPTERS = [
    "recording",
    "metered-recording",
    "socketio-local",
    pytest.param("socketio-redis-server", marks=pytest.mark.redis),
    pytest.param("socketio-redis-worker", marks=pytest.mark.redis),
]


@pytest.fixture(params=ADAPTERS)
async def audience(request: pytest.FixtureRequest) -> AsyncIterator[Audience]:
    kind: str = request.param
    if kind.endswith("recording"):
        yield RecordedAudience(metered=kind == "metered-recording")
        return
    if "redis" in kind:
        require(REDIS)
    started = await SocketIOAudience(kind).start()
    try:
        yield started
    finally:
        await started.close()


async def flushed(audience: Audience, inboxes: dict[str, list[Inbox]]) -> None:
    """Emit a marker to every user and wait for it on every socket: what a socket got
    before the marker is all it will get of what was emitted before (order is per socket)."""
    marker = uuid.uuid4().hex
    await audience.notifier.emit_to_users(list(inboxes), "marker", {"m": marker})
    for inbox in (i for per_user in inboxes.values() for i in per_user):
        await inbox.wait_for("marker", lambda p: p == {"m": marker})


async def test_an_event_reaches_every_socket_of_the_users_named_and_no_other(
    audience: Audience,
) -> None:
    a1, a2 = await audience.connect("a"), await audience.connect("a")
    b, c = await audience.connect("b"), await audience.connect("c")
    await audience.notifier.emit_to_users(["a", "b"], "hello", {"n": 1, "text": "hé ✓"})
    await audience.notifier.emit_to_users(["c"], "hello", {"n": 2, "nested": {"list": [1]}})
    await flushed(audience, {"a": [a1, a2], "b": [b], "c": [c]})
    assert a1.events("hello") == [{"n": 1, "text": "hé ✓"}]
    assert a2.events("hello") == [{"n": 1, "text": "hé ✓"}]
    assert b.events("hello") == [{"n": 1, "text": "hé ✓"}]
    assert c.events("hello") == [{"n": 2, "nested": {"list": [1]}}]


async def test_a_user_named_twice_gets_the_event_once(audience: Audience) -> None:
    a, b = await audience.connect("a"), await audience.connect("b")
    await audience.notifier.emit_to_users(iter(["a", "b", "a", "a"]), "hello", {"n": 1})
    await flushed(audience, {"a": [a], "b": [b]})
    assert a.events("hello") == [{"n": 1}] and b.events("hello") == [{"n": 1}]


async def test_an_event_for_nobody_or_for_users_offline_reaches_nobody(
    audience: Audience,
) -> None:
    a = await audience.connect("a")
    await audience.notifier.emit_to_users([], "hello", {"n": 1})
    await audience.notifier.emit_to_users(["offline"], "hello", {"n": 2})
    await flushed(audience, {"a": [a]})
    assert a.events("hello") == []


async def test_events_arrive_in_the_order_they_were_emitted(audience: Audience) -> None:
    a = await audience.connect("a")
    for n in range(20):
        await audience.notifier.emit_to_users(["a"], "hello", {"n": n})
    await flushed(audience, {"a": [a]})
    assert a.events("hello") == [{"n": n} for n in range(20)]


async def test_the_payload_sent_is_the_one_at_emit_time(audience: Audience) -> None:
    """A caller may reuse its dict after the emit: what was sent must not change with it."""
    a = await audience.connect("a")
    payload: dict[str, Any] = {"n": 1}
    await audience.notifier.emit_to_users(["a"], "hello", payload)
    payload["n"] = 2
    await flushed(audience, {"a": [a]})
    assert a.events("hello") == [{"n": 1}]


async def test_notifications_sent_together_arrive_in_order_each_to_its_users(
    audience: Audience,
) -> None:
    a, b = await audience.connect("a"), await audience.connect("b")
    await audience.notifier.emit_many(
        [
            *(Notification(("a", "b"), "hello", {"n": n}) for n in range(5)),
            Notification(("a", "a"), "hello", {"n": 5}),
            Notification((), "hello", {"n": 6}),  # nobody: nothing to send
            Notification(("b",), "other", {"n": 7}),
        ]
    )
    await audience.notifier.emit_many([])
    await flushed(audience, {"a": [a], "b": [b]})
    assert a.events("hello") == [{"n": n} for n in range(6)]
    assert b.events("hello") == [{"n": n} for n in range(5)]
    assert (a.events("other"), b.events("other")) == ([], [{"n": 7}])


async def test_a_healthy_notifier_passes_its_check(audience: Audience) -> None:
    await audience.connect("a")
    await audience.notifier.check()
