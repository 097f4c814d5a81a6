"""A worker group in Redis: one sorted set of member id -> lease deadline.

The key is ``{name}:worker-group``, ``name`` being what the members share (the broker's
queue prefix). Deadlines are read and written in Redis's own clock (``TIME`` inside the
script), so members on hosts whose clocks disagree still agree on who is alive.
"""

from __future__ import annotations

import os
import socket
import uuid

from redis import asyncio as aioredis

from chat_adapters.redis.client import redis_client
from chat_domain.errors import Unavailable
from chat_domain.ports.worker_group import WorkerGroup

# KEYS: the group. ARGV: member, lease ms. Renew, forget the expired, list the live.
HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], 10 * tonumber(ARGV[2]))
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


class RedisWorkerGroup(WorkerGroup):
    """Members of every process sharing ``name`` (see the module docstring)."""

    def __init__(self, url: str, name: str, lease_seconds: float = 4.0) -> None:
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self._lease = lease_seconds
        # A round trip never waits longer than a heartbeat's share of the lease.
        timeout = max(lease_seconds / 4, 0.1)
        self._redis: aioredis.Redis = redis_client(
            url, wait_for_connection=timeout, socket_timeout=timeout
        )
        self._key = f"{name}:worker-group"
        # Readable in logs: which host and process holds which partitions.
        self._id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._heartbeat = self._redis.register_script(HEARTBEAT)

    @property
    def member_id(self) -> str:
        return self._id

    @property
    def lease_seconds(self) -> float:
        return self._lease

    async def heartbeat(self) -> list[str]:
        try:
            members = await self._heartbeat(
                keys=[self._key], args=[self._id, int(self._lease * 1000)]
            )
        except (aioredis.RedisError, OSError) as exc:
            raise Unavailable(f"worker group: Redis does not answer: {exc!r}") from exc
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    async def leave(self) -> None:
        try:
            await self._redis.zrem(self._key, self._id)
        except (aioredis.RedisError, OSError) as exc:
            raise Unavailable(f"worker group: Redis does not answer: {exc!r}") from exc

    async def close(self) -> None:
        await self._redis.aclose()
