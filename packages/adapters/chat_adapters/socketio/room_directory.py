"""Which server nodes hold a socket in each routed socket.io room, kept in Redis.

A publisher's emits go only to the own channels (``{channel}:node:{node_id}``) of the
nodes listed in their rooms: one script call looks the rooms up and publishes (see
``redis_manager``). Layout, under ``{channel}:``
- ``room-nodes:{namespace}:{room}``: a SET of the node ids holding a socket in the room;
- ``node-lease:{node_id}``: the node's lease, a key with a TTL its supervisor renews.

The invariant every event depends on: a node is listed in a room before its socket's
connect completes, and only while it is subscribed to its channel, so an event published
after a socket connected reaches that socket's node. A node is listed late only in the
harmless direction: it may stay listed a moment after its last socket in the room left
(it drops what it then reads). Entries of a node whose lease ran out (it crashed) are
deleted by the next publish to their room. A node that finds its lease lapsed (Redis lost
its data, or the node stalled longer than the lease) lists all its rooms again.

Writes go through one task per node, in order, each batch deciding from the node's rooms
*at that moment*: a socket leaving and another of the same user arriving can never end
with the node unlisted. Like presence, the lookup script builds lease keys from ARGV, so
this targets one Redis (or a primary with replicas), not Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from redis import asyncio as aioredis

from chat_domain.errors import Unavailable

Room = tuple[str, str]  # (namespace, room)

# Looks up and publishes in one round trip, each emit encoded once by the caller.
# KEYS: room sets. ARGV: lease key prefix, node channel prefix, the publisher's node id
# (served locally: skipped), the head of a batch message, the number of emits, then per
# emit its JSON, its number of rooms and their indices in KEYS. Each node gets one
# message with the emits that have a room it holds, in order: the emit alone, or a batch.
# Entries of nodes whose lease is gone (crashed) are removed on the way.
# Returns {messages published, events in them}.
PUBLISH = """
local alive, nodes_of = {}, {}
for i, key in ipairs(KEYS) do
  local nodes = {}
  for _, node in ipairs(redis.call('SMEMBERS', key)) do
    local up = alive[node]
    if up == nil then
      up = redis.call('EXISTS', ARGV[1] .. node) == 1
      alive[node] = up
    end
    if up then nodes[#nodes + 1] = node else redis.call('SREM', key, node) end
  end
  nodes_of[i] = nodes
end
local shares, order, at = {}, {}, 6
for _ = 1, tonumber(ARGV[5]) do
  local payload, count, seen = ARGV[at], tonumber(ARGV[at + 1]), {}
  for j = 1, count do
    for _, node in ipairs(nodes_of[tonumber(ARGV[at + 1 + j])]) do
      if node ~= ARGV[3] and not seen[node] then
        seen[node] = true
        local share = shares[node]
        if share == nil then
          share = {}
          shares[node] = share
          order[#order + 1] = node
        end
        share[#share + 1] = payload
      end
    end
  end
  at = at + 2 + count
end
local events = 0
for _, node in ipairs(order) do
  local share = shares[node]
  local message = share[1]
  if #share > 1 then message = ARGV[4] .. table.concat(share, ',') .. ']}' end
  redis.call('PUBLISH', ARGV[2] .. node, message)
  events = events + #share
end
return {#order, events}
"""
WRITE_TIMEOUT_S = 5.0  # a socket's connect waits at most this long for its listing


class RoomDirectory:
    """The Redis directory of rooms -> nodes, and this node's listing in it."""

    def __init__(
        self,
        redis: Callable[[], aioredis.Redis],
        channel: str,
        node_id: str,
        holds: Callable[[Room], bool],
        held: Callable[[], Iterable[Room]],
        lease_seconds: float,
        log: logging.Logger,
        write_timeout: float = WRITE_TIMEOUT_S,
    ) -> None:
        self._redis, self._node_id, self._log = redis, node_id, log
        self._channel = channel
        self._holds, self._held = holds, held
        self._rooms_prefix = f"{channel}:room-nodes:"
        self._lease_prefix = f"{channel}:node-lease:"
        self._lease_ms = int(lease_seconds * 1000)
        self._write_timeout = write_timeout
        self._listed: set[Room] = set()  # rooms whose SADD is confirmed, no SREM since
        self._pending: set[Room] = set()  # rooms whose listing must follow local state
        self._batch: asyncio.Future[None] | None = None  # done when pending is written
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._dirty = False  # a write failed: relist everything at the next renewal
        self._script: tuple[aioredis.Redis, Any] | None = None
        self.subscribed = asyncio.Event()  # set by the listener while it is subscribed

    def key(self, room: Room) -> str:
        return f"{self._rooms_prefix}{room[0]}:{room[1]}"

    def node_channel(self, node_id: str) -> str:
        """The channel only node ``node_id`` reads: the events for its sockets."""
        return f"{self._channel}:node:{node_id}"

    # --- publishing (any process, write-only ones too) --------------------------------
    async def publish(
        self, emits: list[tuple[str, list[Room]]], batch_head: str
    ) -> tuple[int, int]:
        """Publish each ``(emit JSON, its rooms)`` to the nodes holding one of its rooms,
        one message per node (``batch_head`` + JSONs + ``]}`` if several), in one round
        trip; this node is skipped. Returns (messages, events) published."""
        keys: dict[Room, int] = {}  # room -> its 1-based index in KEYS
        args: list[Any] = [
            self._lease_prefix,
            self.node_channel(""),
            self._node_id,
            batch_head,
            len(emits),
        ]
        for payload, rooms in emits:
            args += [payload, len(rooms), *(keys.setdefault(r, len(keys) + 1) for r in rooms)]
        client = self._redis()
        if self._script is None or self._script[0] is not client:
            self._script = (client, client.register_script(PUBLISH))
        messages, events = await self._script[1](keys=[self.key(r) for r in keys], args=args)
        return int(messages), int(events)

    # --- this node's listing ----------------------------------------------------------
    async def join(self, room: Room) -> None:
        """After a local socket entered ``room``: return once this node is listed in it.

        Raises ``Unavailable`` if the node is not subscribed or Redis does not answer in
        time: the caller refuses the socket rather than let it miss events silently.
        """
        if room in self._listed:
            return
        try:
            async with asyncio.timeout(self._write_timeout):
                await self.subscribed.wait()  # listed means "reachable": subscribed first
                await asyncio.shield(self._request([room]))
        except TimeoutError:
            raise Unavailable("socket.io room directory: not written in time") from None

    def left(self, room: Room) -> None:
        """After the last local socket left ``room``: unlist this node (in the background)."""
        self._request([room])

    def relist(self) -> None:
        """List this node again in every room it holds (after a resubscribe or a lapse)."""
        self._request(list(self._held()))

    async def renew(self) -> None:
        """Renew this node's lease; relist everything if it had lapsed or a write failed."""
        lease = f"{self._lease_prefix}{self._node_id}"
        renewed = await self._redis().set(lease, "1", px=self._lease_ms, xx=True)
        if not renewed or self._dirty:
            if not renewed and self._listed:
                self._log.error("socket.io node lease had lapsed: listing its rooms again")
            self._dirty = False
            self.relist()

    async def close(self) -> None:
        """Unlist this node everywhere and drop its lease (a clean shutdown)."""
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._write_timeout):
                async with self._redis().pipeline(transaction=False) as pipe:
                    for room in self._listed:
                        pipe.srem(self.key(room), self._node_id)
                    pipe.delete(f"{self._lease_prefix}{self._node_id}")
                    await pipe.execute()
        self._listed.clear()

    def _request(self, rooms: list[Room]) -> asyncio.Future[None]:
        self._pending.update(rooms)
        if self._batch is None:
            self._batch = asyncio.get_running_loop().create_future()
        batch = self._batch
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_forever())
        self._wake.set()
        return batch

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, rooms = self._batch, self._pending
            self._batch, self._pending = None, set()
            try:
                await self._write(rooms)
            except Exception as exc:
                self._dirty = True
                self._log.error("socket.io room directory write failed: %s", exc)
                if batch is not None and not batch.done():
                    batch.set_exception(Unavailable("socket.io room directory unavailable"))
                    batch.exception()  # retrieved: nobody may be waiting (only departures)
            else:
                if batch is not None and not batch.done():
                    batch.set_result(None)

    async def _write(self, rooms: set[Room]) -> None:
        # Decided now, from the node's rooms now: later changes queue another batch.
        enter = [r for r in rooms if self._holds(r)]
        leave = [r for r in rooms if not self._holds(r)]
        self._listed.difference_update(leave)  # unlisted from here on, even if it fails
        async with self._redis().pipeline(transaction=True) as pipe:
            # The lease first, in the same transaction: a lookup never sees a listing of a
            # node without a lease (and would delete it).
            pipe.set(f"{self._lease_prefix}{self._node_id}", "1", px=self._lease_ms)
            for room in enter:
                pipe.sadd(self.key(room), self._node_id)
            for room in leave:
                pipe.srem(self.key(room), self._node_id)
            async with asyncio.timeout(self._write_timeout):
                await pipe.execute()
        # A room left meanwhile has a request queued: that batch unlists it again.
        self._listed.update(enter)
