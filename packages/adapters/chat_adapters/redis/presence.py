"""Presence across nodes in Redis, with crashed nodes' sockets expiring by themselves.

Layout, under ``{prefix}:presence:``
- ``user:{user_id}``: a SET of ``{node_id}|{socket_id}``, one member per connected socket;
- ``node:{node_id}``: this node's lease, a key with a TTL that a heartbeat refreshes.

A socket counts only while its node's lease is alive, so a node that dies without
running its disconnect handlers stops counting within ``lease_seconds``, with no sweeper.
Connect and disconnect are Lua scripts: reading the user's live sockets and changing
the set is one atomic step, so of two sockets of one user racing on two nodes exactly
one sees the edge. Members of dead nodes are deleted when the user's set is next
written. The scripts build lease keys from ARGV, so this targets a single Redis (or a
primary with replicas), not Redis Cluster. Caveat: a node stalled longer than its lease
has its sockets counted offline (and later garbage-collected) while they may still be
connected; the lease (30 s by default) is meant to outlast any stall but a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable
from typing import Any

from redis import asyncio as aioredis

from chat_adapters.redis.client import redis_client
from chat_domain.errors import Unavailable
from chat_domain.ports.presence import PresenceTracker

log = logging.getLogger("chat.presence")

# Live sockets other than ours, deleting dead nodes' members on the way.
_LIVE = """
local function live(key, prefix, except)
  local n = 0
  for _, m in ipairs(redis.call('SMEMBERS', key)) do
    local node = string.match(m, '^(.-)|')
    if node and redis.call('EXISTS', prefix .. node) == 1 then
      if m ~= except then n = n + 1 end
    else
      redis.call('SREM', key, m)
    end
  end
  return n
end
"""
# KEYS: user set, node lease. ARGV: member, lease ms, lease key prefix. 1 = became online.
CONNECT = (
    _LIVE
    + """
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
local others = live(KEYS[1], ARGV[3], ARGV[1])
local added = redis.call('SADD', KEYS[1], ARGV[1])
if others == 0 and added == 1 then return 1 end
return 0
"""
)
# KEYS: user set. ARGV: member, lease key prefix. 1 = that was the last live socket.
DISCONNECT = (
    _LIVE
    + """
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if live(KEYS[1], ARGV[2], '') == 0 then return 1 end
return 0
"""
)
# KEYS: user sets. ARGV: lease key prefix. One 0/1 per key; read-only (no GC).
ONLINE = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = 0
  for _, m in ipairs(redis.call('SMEMBERS', key)) do
    local node = string.match(m, '^(.-)|')
    if node and redis.call('EXISTS', ARGV[1] .. node) == 1 then out[i] = 1; break end
  end
end
return out
"""


class RedisPresenceTracker(PresenceTracker):
    """Presence shared by every node through Redis (see the module docstring)."""

    def __init__(self, url: str, prefix: str = "chat", lease_seconds: float = 30.0) -> None:
        self._redis: aioredis.Redis = redis_client(url, wait_for_connection=10.0)
        self._node_id = uuid.uuid4().hex
        self._base = f"{prefix}:presence:"
        self._lease_ms = int(lease_seconds * 1000)
        self._heartbeat: asyncio.Task[None] | None = None
        self._connect = self._redis.register_script(CONNECT)
        self._disconnect = self._redis.register_script(DISCONNECT)
        self._online = self._redis.register_script(ONLINE)

    def _user_key(self, user_id: str) -> str:
        return f"{self._base}user:{user_id}"

    @property
    def _lease_key(self) -> str:
        return f"{self._base}node:{self._node_id}"

    def _member(self, socket_id: str) -> str:
        return f"{self._node_id}|{socket_id}"

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except aioredis.RedisError as exc:
            raise Unavailable(f"presence: Redis does not answer: {type(exc).__name__}") from exc

    async def socket_connected(self, user_id: str, socket_id: str) -> bool:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._renew_lease())
        became = await self._call(
            self._connect,
            [self._user_key(user_id), self._lease_key],
            [self._member(socket_id), self._lease_ms, f"{self._base}node:"],
        )
        return bool(became)

    async def socket_disconnected(self, user_id: str, socket_id: str) -> bool:
        went = await self._call(
            self._disconnect,
            [self._user_key(user_id)],
            [self._member(socket_id), f"{self._base}node:"],
        )
        return bool(went)

    async def online(self, user_ids: Iterable[str]) -> set[str]:
        users = list(dict.fromkeys(user_ids))
        if not users:
            return set()
        flags = await self._call(
            self._online, [self._user_key(u) for u in users], [f"{self._base}node:"]
        )
        return {u for u, flag in zip(users, flags, strict=True) if flag}

    async def check(self) -> None:
        try:
            await self._redis.ping()
        except aioredis.RedisError as exc:
            raise Unavailable(f"presence: Redis does not answer: {type(exc).__name__}") from exc

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        # Our sockets stop counting at once rather than when the lease runs out.
        with contextlib.suppress(aioredis.RedisError):
            await self._redis.delete(self._lease_key)
        await self._redis.aclose()

    async def _renew_lease(self) -> None:
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            try:
                # XX: only renew a live lease; a lapsed one means our sockets were dropped.
                if not await self._redis.set(self._lease_key, "1", px=self._lease_ms, xx=True):
                    log.error("presence lease of this node had lapsed: renewing it")
                    await self._redis.set(self._lease_key, "1", px=self._lease_ms)
            except aioredis.RedisError as exc:
                log.warning("presence lease renewal failed: %s", exc)
