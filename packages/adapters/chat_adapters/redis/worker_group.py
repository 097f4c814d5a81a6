"""A worker group in Redis: a sorted set of member id -> lease deadline, a hash of
messages handled per partition, and the partition plan.

The keys are ``{name}:worker-group``, ``{name}:worker-group:handled`` and
``{name}:worker-group:plan`` (a hash: ``epoch``, and the plan as JSON in ``plan``),
``name`` being what the members share (the broker's queue prefix). Deadlines and the
plan's clock are Redis's own (``TIME`` inside the scripts), so members on hosts whose
clocks disagree still agree on who is alive and when a reading is due.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Mapping

from redis import asyncio as aioredis

from chat_adapters.redis.client import redis_client
from chat_domain.errors import Unavailable
from chat_domain.ports.worker_group import BalancePolicy, GroupView, PartitionPlan, WorkerGroup

log = logging.getLogger(__name__)

# The counters and the plan outlive the members by this much (the plan's loads then
# place the partitions of a group that restarts).
KEPT_MS = 24 * 3600 * 1000

# KEYS: the group, the counters, the plan. ARGV: member, lease ms, kept ms, then pairs of
# partition, messages handled. Renew, forget the expired, count; the live members, the
# counters, the plan ('' when none), its epoch and the time in ms.
BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], 10 * tonumber(ARGV[2]))
for i = 4, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PEXPIRE', KEYS[3], ARGV[3]) end
local plan = redis.call('HMGET', KEYS[3], 'plan', 'epoch')
return {redis.call('ZRANGE', KEYS[1], 0, -1), redis.call('HGETALL', KEYS[2]),
        plan[1] or '', plan[2] or '0', now}
"""

# KEYS: the plan. ARGV: its epoch, the plan, kept ms. Stored only over the epoch before.
PROPOSE = """
local stored = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
if stored ~= tonumber(ARGV[1]) - 1 then return 0 end
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'plan', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""


class RedisWorkerGroup(WorkerGroup):
    """Members of every process sharing ``name`` (see the module docstring)."""

    def __init__(
        self,
        url: str,
        name: str,
        lease_seconds: float = 4.0,
        policy: BalancePolicy | None = None,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self._lease = lease_seconds
        self._policy = policy or BalancePolicy()
        # A round trip never waits longer than a heartbeat's share of the lease.
        timeout = max(lease_seconds / 4, 0.1)
        self._redis: aioredis.Redis = redis_client(
            url, wait_for_connection=timeout, socket_timeout=timeout
        )
        self._key = f"{name}:worker-group"
        self._keys = [self._key, f"{self._key}:handled", f"{self._key}:plan"]
        # Readable in logs: which host and process holds which partitions.
        self._id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._beat = self._redis.register_script(BEAT)
        self._propose = self._redis.register_script(PROPOSE)

    @property
    def member_id(self) -> str:
        return self._id

    @property
    def lease_seconds(self) -> float:
        return self._lease

    @property
    def policy(self) -> BalancePolicy:
        return self._policy

    async def beat(self, handled: Mapping[int, int]) -> GroupView:
        args: list[str | int] = [self._id, int(self._lease * 1000), KEPT_MS]
        for partition, count in sorted(handled.items()):
            if count:
                args += [partition, count]
        try:
            members, counters, plan, epoch, now = await self._beat(keys=self._keys, args=args)
        except (aioredis.RedisError, OSError) as exc:
            raise Unavailable(f"worker group: Redis does not answer: {exc!r}") from exc
        pairs = [_text(x) for x in counters]
        counted = {int(p): int(c) for p, c in zip(pairs[::2], pairs[1::2], strict=True)}
        return GroupView(
            members=sorted(_text(m) for m in members),
            counted=counted,
            plan=_plan(_text(plan)),
            now=int(now) / 1000,
            epoch=int(_text(epoch)),
        )

    async def propose(self, plan: PartitionPlan) -> bool:
        body = json.dumps(plan.as_dict(), separators=(",", ":"))
        try:
            stored = await self._propose(keys=self._keys[2:], args=[plan.epoch, body, KEPT_MS])
        except (aioredis.RedisError, OSError) as exc:
            raise Unavailable(f"worker group: Redis does not answer: {exc!r}") from exc
        return bool(stored)

    async def leave(self) -> None:
        try:
            await self._redis.zrem(self._key, self._id)
        except (aioredis.RedisError, OSError) as exc:
            raise Unavailable(f"worker group: Redis does not answer: {exc!r}") from exc

    async def close(self) -> None:
        await self._redis.aclose()


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _plan(stored: str) -> PartitionPlan | None:
    """The stored plan; an unreadable one counts as none (the leader writes the next over
    it, and members split by count meanwhile)."""
    if not stored:
        return None
    try:
        return PartitionPlan.from_dict(json.loads(stored))
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("unreadable partition plan in Redis, ignored: %r", exc)
        return None
