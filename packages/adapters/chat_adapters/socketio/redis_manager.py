"""python-socketio's Redis manager, supervised: a dead or deaf listener is seen and restarted.

python-socketio's ``AsyncRedisManager`` has failed in production in two quiet ways
(PITFALLS §2, python-socketio#1581/#1585): its listener task died for good, or it
looped on "Cannot receive from redis" while every cross-node emit was lost. Both are
invisible from outside: emits still "succeed". This subclass

- owns the listen loop (one Redis client, a fresh pub/sub connection per subscribe,
  the old one closed, capped backoff) instead of leaking a client per retry;
- runs a supervisor that, every ``probe_interval``, publishes a canary on a channel
  only this node subscribes to: PUBLISH answering 0 receivers means "not subscribed",
  no echo within ``probe_timeout`` means "subscribed but not reading". Either, or a
  finished listener task, is logged at ERROR and the listener is restarted;
- exposes ``check()`` (readiness) and Prometheus metrics;
- makes a failed publish visible: logged and counted, and on a write-only manager
  (the worker) raised as ``Unavailable`` so the caller retries instead of believing
  the event went out (the stock ``_publish`` returns None after "giving up");
- delivers targeted (docs/scaling.md, "Targeted delivery"): each node also subscribes
  to a channel of its own, ``{channel}:node:{node_id}``, and lists itself in a Redis
  directory (``room_directory``) for each user room it holds a socket of, before that
  socket's connect completes. Emits to user rooms are published, by one script call
  per batch, only to the channels of the nodes listed in their rooms, one message per
  node; anything else (a broadcast, an emit to a socket of another node) still goes to
  the shared channel every node reads. So a node reads, decodes and fans out only
  events it has a recipient for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import socketio
from prometheus_client import Counter, Gauge
from redis import asyncio as aioredis

from chat_adapters.socketio.fan_out import InlineFanOutManager
from chat_adapters.socketio.notifier import USER_ROOM_PREFIX
from chat_adapters.socketio.room_directory import Room, RoomDirectory
from chat_adapters.socketio.routing import batch_head, packed, routed_rooms, unpacked
from chat_domain.errors import Unavailable

default_log = logging.getLogger("chat.socketio.redis")

LISTENER_UP = Gauge(
    "chat_socketio_redis_listener_up",
    "1 while this node's socket.io Redis listener is subscribed and echoes its canary",
    ["channel"],
)
LISTENER_RESTARTS = Counter(
    "chat_socketio_redis_listener_restarts_total",
    "Times the supervisor restarted a dead or deaf socket.io Redis listener",
    ["channel"],
)
MESSAGES_PUBLISHED = Counter(
    "chat_socketio_redis_messages_published_total",
    "socket.io pub/sub messages this process published to Redis (one may hold several events)",
    ["channel"],
)
EVENTS_PUBLISHED = Counter(
    "chat_socketio_redis_events_published_total",
    "socket.io events in the pub/sub messages this process published",
    ["channel"],
)
MESSAGES_RECEIVED = Counter(
    "chat_socketio_redis_messages_received_total",
    "socket.io pub/sub messages this node read from Redis (canaries not counted)",
    ["channel"],
)
EVENTS_RECEIVED = Counter(
    "chat_socketio_redis_events_received_total",
    "socket.io events in the pub/sub messages this node read (each decoded and fanned out)",
    ["channel"],
)
PUBLISH_FAILURES = Counter(
    "chat_socketio_redis_publish_failures_total",
    "socket.io events that could not be published to Redis (lost for other nodes)",
    ["channel"],
)

RESUBSCRIBE_DELAY_MIN = 0.5
RESUBSCRIBE_DELAY_MAX = 5.0  # pub/sub is at-most-once: keep the deaf gap short
MISSED_ECHOES_BEFORE_RESTART = 2  # a busy listener may be late once; twice is deaf
LISTENER_STOP_TIMEOUT_S = 2.0  # for an old listener to close its dead connection


@dataclass
class PubSubTraffic:
    """What one manager published and read (the counters above, per instance)."""

    messages_published: int = 0
    events_published: int = 0
    messages_received: int = 0
    events_received: int = 0


class SupervisedRedisManager(socketio.AsyncRedisManager, InlineFanOutManager):  # type: ignore[misc]
    """A socket.io Redis manager whose listener is watched, restarted and reported."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        channel: str = "socketio",
        write_only: bool = False,
        logger: logging.Logger | None = None,
        json: Any = None,
        redis_options: dict[str, Any] | None = None,
        probe_interval: float = 5.0,
        probe_timeout: float = 2.0,
        targeted: bool = True,
        node_lease: float = 30.0,
        routed_prefix: str = USER_ROOM_PREFIX,
    ) -> None:
        options = dict(redis_options or {})
        super().__init__(
            url=url,
            channel=channel,
            write_only=write_only,
            logger=logger or default_log,
            json=json,
            redis_options=options,
        )
        # Named connections make `CLIENT LIST` readable (and let tests kill exactly ours).
        options.setdefault("client_name", f"chat-socketio-{self.host_id[:12]}")
        self.redis_options = options
        self._log: logging.Logger = logger or default_log
        self._probe_interval, self._probe_timeout = probe_interval, probe_timeout
        self._canary_channel = f"{channel}#canary#{self.host_id}"
        self._echoes: dict[str, asyncio.Future[None]] = {}
        self._client: aioredis.Redis | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._problem: str | None = None
        self._missed_echoes = 0
        self.thread: asyncio.Task[None] | None = None
        self.traffic = PubSubTraffic()
        # Targeted delivery: ``targeted`` says how this process *publishes*; every
        # listening node subscribes to its own channel and lists its rooms either way.
        self._targeted, self._routed_prefix = targeted, routed_prefix
        self._batch_head = batch_head(self.host_id)
        self._listening: object | None = None  # the listener run that is subscribed
        self.directory = RoomDirectory(
            self._redis,
            channel,
            self.host_id,
            holds=lambda room: room[1] in self.rooms.get(room[0], {}),
            held=self._routed_rooms_held,
            lease_seconds=node_lease,
            log=self._log,
        )
        self._node_channel = self.node_channel(self.host_id)

    def node_channel(self, node_id: str) -> str:
        """The channel only node ``node_id`` reads: the events for its sockets."""
        return self.directory.node_channel(node_id)

    def _routed(self, room: Any) -> bool:
        return isinstance(room, str) and room.startswith(self._routed_prefix)

    def _routed_rooms_held(self) -> list[Room]:
        return [(ns, r) for ns, rooms in self.rooms.items() for r in rooms if self._routed(r)]

    # --- connection -----------------------------------------------------------------
    def _redis(self) -> aioredis.Redis:
        """One client (a connection pool) for publishing, probing and pub/sub connections."""
        if self._client is None:
            self._client = aioredis.Redis.from_url(self.redis_url, **self.redis_options)
            self.redis = self._client
            self.connected = True
        return self._client

    # --- lifecycle ------------------------------------------------------------------
    def initialize(self) -> None:
        """Called by the server on its first client connect: start listener and supervisor."""
        super().initialize()
        if not self.write_only:
            self._supervisor = asyncio.ensure_future(self._supervise())

    async def close(self) -> None:
        """Stop the supervisor and listener, unlist this node, close the Redis client."""
        for task in (self._supervisor, self.thread):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if not self.write_only:
            await self.directory.close()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        LISTENER_UP.labels(self.channel).set(0)

    # --- health ---------------------------------------------------------------------
    async def check(self) -> None:
        """Raise ``Unavailable`` if this node cannot publish, or its listener is unhealthy."""
        if self.thread is not None and self.thread.done():
            raise Unavailable("socket.io Redis listener has stopped")
        if self.thread is not None and self._problem is not None:
            raise Unavailable(f"socket.io Redis listener: {self._problem}")
        try:
            await self._redis().ping()
        except Exception as exc:
            raise Unavailable(f"Redis does not answer: {type(exc).__name__}") from exc

    async def probe(self) -> None:
        """One supervision round: find a dead or deaf listener, restart it, record health."""
        if self.thread is None:  # not initialized yet (no client connected) or write-only
            return
        if self.thread.done():
            problem: str | None = "listener task ended"
            restart = True
        else:
            problem, definite = await self._canary_round_trip()
            self._missed_echoes = self._missed_echoes + 1 if problem and not definite else 0
            restart = definite or self._missed_echoes >= MISSED_ECHOES_BEFORE_RESTART
        self._problem = problem
        LISTENER_UP.labels(self.channel).set(0 if problem else 1)
        if problem is None:
            return
        if not restart:
            self._log.warning("socket.io Redis listener late: %s", problem)
            return
        self._log.error("socket.io Redis listener unhealthy (%s): restarting it", problem)
        await self._restart_listener()

    async def _canary_round_trip(self) -> tuple[str | None, bool]:
        """(problem or None, whether the problem is certain rather than maybe slowness)."""
        token = uuid.uuid4().hex
        echo: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._echoes[token] = echo
        try:
            async with asyncio.timeout(self._probe_timeout):
                receivers = await self._redis().publish(self._canary_channel, token)
                if receivers == 0:
                    return "not subscribed (canary reached no subscriber)", True
                await echo
            return None, False
        except TimeoutError:
            return f"canary not echoed within {self._probe_timeout:g} s", False
        except Exception as exc:
            return f"Redis does not answer: {type(exc).__name__}: {exc}", True
        finally:
            self._echoes.pop(token, None)

    async def _restart_listener(self) -> None:
        old = self.thread
        if old is not None and not old.done():
            old.cancel()
            # Bounded: a listener stuck closing a dead connection must not stall the restart
            # (it was cancelled; it ends on its own, and the new one does not need it).
            _, pending = await asyncio.wait({old}, timeout=LISTENER_STOP_TIMEOUT_S)
            if pending:
                self._log.warning("old socket.io Redis listener still closing: not waiting")
        self._missed_echoes = 0
        self.thread = self.server.start_background_task(self._thread)
        LISTENER_RESTARTS.labels(self.channel).inc()

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(self._probe_interval)
            try:
                await self.directory.renew()
            except Exception as exc:
                self._log.warning("socket.io node lease renewal failed: %s", exc)
            try:
                await self.probe()
            except Exception:  # the supervisor itself must never die quietly
                self._log.exception("socket.io Redis supervision round failed")

    # --- rooms: this node's listing in the directory ----------------------------------
    async def enter_room(
        self, sid: str, namespace: str, room: Any, eio_sid: str | None = None
    ) -> None:
        """As python-socketio's; for a user room of a socket of this node, return only
        once this node is listed in it (raises ``Unavailable`` if it cannot be)."""
        await super().enter_room(sid, namespace, room, eio_sid=eio_sid)
        local = self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace)
        if self._routed(room) and local and not self.write_only:
            await self.directory.join((namespace, room))

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)
        gone = room not in self.rooms.get(namespace, {})
        if self._routed(room) and gone and not self.write_only:
            self.directory.left((namespace, room))  # its last socket here left

    # --- emits --------------------------------------------------------------------
    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str | None = None,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        """As python-socketio's, except that an emit to one socket of this node is not
        published: every other node would read it only to drop it. A socket told which of
        its room mates are online gets one event each, so without this n members coming
        online cost n² pub/sub messages."""
        target, namespace = to or room, namespace or "/"
        local = isinstance(target, str) and self.is_connected(target, namespace)
        if local and callback is None:
            kwargs["ignore_queue"] = True
        await super().emit(
            event,
            data,
            namespace=namespace,
            room=target,
            skip_sid=skip_sid,
            callback=callback,
            **kwargs,
        )

    # --- several emits in one message ------------------------------------------------
    async def emit_many(
        self, emits: Sequence[tuple[str, Any, list[str]]], namespace: str = "/"
    ) -> None:
        """Emit ``(event, data, rooms)`` in order, as one pub/sub message for all of them.

        A worker storing a batch of messages publishes one message instead of one per
        message, and every node reads and decodes one. Nodes unpack it in ``_listen``, so
        servers must run this version before workers do. No callbacks, no binary data.
        """
        messages = [
            {
                "method": "emit",
                "event": event,
                "data": [data],
                "binary": False,
                "namespace": namespace,
                "room": rooms,
                "skip_sid": None,
                "callback": None,
                "host_id": self.host_id,
            }
            for event, data, rooms in emits
        ]
        for message in messages:
            await self._handle_emit(message)  # this node's own sockets (none if write-only)
        if messages:
            await self._publish_all(messages)

    # --- pub/sub transport (the two hooks of AsyncPubSubManager) ----------------------
    async def _publish(self, data: Any) -> Any:
        await self._publish_all([data])

    async def _publish_all(self, messages: list[dict[str, Any]]) -> None:
        """Publish ``messages`` (in order), retrying once; a failure is logged and counted,
        and raised as ``Unavailable`` on a write-only manager."""
        error: Exception | None = None
        for attempt in (1, 2):  # the pool replaces a dropped connection on the retry
            try:
                await self._publish_once(messages)
                return
            except Exception as exc:
                error = exc
                if attempt == 1:
                    self._log.warning("socket.io Redis publish failed, retrying: %s", exc)
        PUBLISH_FAILURES.labels(self.channel).inc()
        self._log.error(
            "socket.io Redis publish of %r failed: lost for other nodes: %s",
            messages[0].get("event") or messages[0].get("method"),
            error,
        )
        if self.write_only:  # the worker: let the caller retry (StoreMessages re-emits)
            raise Unavailable("socket.io Redis publish failed") from error

    async def _publish_once(self, messages: list[dict[str, Any]]) -> None:
        prefix = self._routed_prefix
        rooms_of = [routed_rooms(m, prefix) for m in messages]
        if not self._targeted or any(rooms is None for rooms in rooms_of):
            # To every node, one message (a batch keeps its order: never split it).
            await self._redis().publish(
                self.channel, self.json.dumps(packed(messages, self.host_id))
            )
            self._count_published(1, len(messages))
            return
        encoded = [
            (self.json.dumps(m), [(m.get("namespace") or "/", r) for r in rooms or ()])
            for m, rooms in zip(messages, rooms_of, strict=True)
        ]
        sent, events = await self.directory.publish(encoded, self._batch_head)
        self._count_published(sent, events)

    async def _listen(self) -> AsyncIterator[Any]:
        shared, canary = self.channel.encode(), self._canary_channel.encode()
        own = self._node_channel.encode()
        delay = RESUBSCRIBE_DELAY_MIN
        while True:
            pubsub = self._redis().pubsub()
            self.pubsub = pubsub
            run = self._listening = object()
            try:
                await pubsub.subscribe(self.channel, self._canary_channel, self._node_channel)
                delay = RESUBSCRIBE_DELAY_MIN
                async for message in pubsub.listen():
                    kind, channel = message.get("type"), message.get("channel")
                    if kind == "message" and channel in (shared, own):
                        emits = self._unpack(message["data"])
                        self._count_received(len(emits))
                        if channel == own:
                            self._forget_rooms_not_held(emits)
                        for data in emits:
                            yield data
                    elif kind == "message" and channel == canary:
                        self._on_echo(message["data"])
                    elif kind == "subscribe" and channel == own:
                        # Confirmed by Redis: events published from now on reach this node,
                        # so it may be listed (again: Redis may have lost the directory).
                        self.directory.subscribed.set()
                        self.directory.relist()
                self._log.error("socket.io Redis subscription ended: resubscribing")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # Cancelled (a restart) while redis-py turned that into a connection
                    # error: stop, or this listener would subscribe next to its successor.
                    raise asyncio.CancelledError from exc
                LISTENER_UP.labels(self.channel).set(0)
                self._log.error(
                    "socket.io Redis listener lost its subscription (%s: %s): "
                    "resubscribing in %.1f s",
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESUBSCRIBE_DELAY_MAX)
            finally:
                if self._listening is run:  # not a newer listener's subscription
                    self.directory.subscribed.clear()
                # Bounded too: closing a connection Redis already dropped can hang.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(LISTENER_STOP_TIMEOUT_S):
                        await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    def _forget_rooms_not_held(self, emits: list[Any]) -> None:
        """An event came with no room this node holds: it is still listed in one (an
        unlisting failed, or raced this event). Unlist it, so it stops reading them."""
        for emit in emits:
            namespace, rooms = emit.get("namespace") or "/", emit.get("room")
            if not isinstance(rooms, list):
                continue
            held = self.rooms.get(namespace, {})
            if not any(room in held for room in rooms):
                for room in rooms:
                    if self._routed(room):
                        self.directory.left((namespace, room))

    def _unpack(self, raw: bytes | str) -> list[Any]:
        """A pub/sub message as the stock listener takes it: one dict per emit."""
        try:
            data = self.json.loads(raw)
        except ValueError:
            self._log.warning("undecodable socket.io pub/sub message dropped")
            return []
        return unpacked(data)

    def _count_published(self, messages: int, events: int) -> None:
        self.traffic.messages_published += messages
        self.traffic.events_published += events
        MESSAGES_PUBLISHED.labels(self.channel).inc(messages)
        EVENTS_PUBLISHED.labels(self.channel).inc(events)

    def _count_received(self, events: int) -> None:
        self.traffic.messages_received += 1
        self.traffic.events_received += events
        MESSAGES_RECEIVED.labels(self.channel).inc()
        EVENTS_RECEIVED.labels(self.channel).inc(events)

    def _on_echo(self, data: bytes | str) -> None:
        token = data.decode() if isinstance(data, bytes) else data
        echo = self._echoes.get(token)
        if echo is not None and not echo.done():
            echo.set_result(None)
