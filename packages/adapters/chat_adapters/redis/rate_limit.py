"""Token buckets in Redis: one budget per key across every server node."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from chat_adapters.redis.client import redis_client
from chat_domain.ports.rate_limit import RateLimiter, RateRule

log = logging.getLogger("chat.rate_limit")

# KEYS[1] the bucket; ARGV: refill per second, burst, tokens wanted. Takes as many of the
# wanted tokens as there are (at least one, or none). Time is Redis' own clock, so nodes
# with skewed clocks share one bucket correctly. Answers "granted wait" (Lua numbers
# become integers on the way out, hence a string), wait being the seconds until a token
# when none was granted. The key expires once the bucket would be full again, so idle
# buckets cost nothing.
_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local granted = math.min(want, math.floor(tokens))
local wait = 0
if granted >= 1 then
  tokens = tokens - granted
else
  granted = 0
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
           'at', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return string.format('%d %.6f', granted, wait)
"""

# A node takes up to LEASE tokens of a roomy bucket in one call and spends them itself for
# up to LEASE_TTL_S: under load a send made one Redis round trip per message, ~10% of a
# server's CPU. A leased token was taken from the shared bucket, so nodes together never
# admit more than it holds; one left unused when its lease ends is lost (a little
# stricter, never looser). A refusal is remembered until its retry-after, and one call at
# a time per bucket asks Redis (the others wait for its answer), so a burst of calls does
# not lease more than it spends. Rules with a small burst (logins) are not leased: exact.
LEASE = 8
LEASE_TTL_S = 1.0
MIN_BURST_TO_LEASE = 4 * LEASE
MAX_BUCKETS = 100_000  # remembered leases and refusals, least recently used dropped
_REFUSED = -1  # in place of a token count: Redis said no, until the retry-after


class RedisRateLimiter(RateLimiter):
    """A Lua token bucket per key, atomic in Redis, leased a few tokens at a time.

    If Redis does not answer, the call passes (and a warning is logged): a rate limit
    protects the service from abuse; it must not take the chat down with it.
    """

    def __init__(
        self, url: str, prefix: str = "chat:rate", now: Callable[[], float] = time.monotonic
    ) -> None:
        self._redis: Redis = redis_client(url, wait_for_connection=2.0, socket_timeout=2.0)
        self._script = self._redis.register_script(_TOKEN_BUCKET)
        self._prefix = prefix
        self._now = now
        # bucket -> (tokens leased and not spent, until when), or (_REFUSED, retry at)
        self._local: OrderedDict[str, tuple[int, float]] = OrderedDict()
        # bucket -> the call of this node asking Redis now; its result: whether Redis failed
        self._asking: dict[str, asyncio.Future[bool]] = {}

    async def _take(self, bucket: str, rule: RateRule) -> float:
        while True:
            now = self._now()
            tokens, until = self._local.get(bucket, (0, now))
            if now < until and tokens > 0:
                self._keep(bucket, tokens - 1, until)
                return 0.0
            if now < until and tokens == _REFUSED:
                return until - now  # refused moments ago: still no token
            asking = self._asking.get(bucket)
            if asking is None:
                break
            # Another call of this node is asking Redis: wait for its answer. If Redis did
            # not answer, pass too, rather than each waiting for its own timeout in turn.
            if await asyncio.shield(asking):
                return 0.0
        asking = self._asking[bucket] = asyncio.get_running_loop().create_future()
        want = LEASE if rule.burst >= MIN_BURST_TO_LEASE else 1
        unanswered = True
        try:
            answer = await self._script(
                keys=[f"{self._prefix}:{bucket}"], args=[rule.per_second, rule.burst, want]
            )
            unanswered = False
        except (RedisError, OSError) as exc:
            log.warning("rate limiter: Redis did not answer (%s); letting the call through", exc)
            return 0.0
        finally:
            del self._asking[bucket]
            asking.set_result(unanswered)
        return self._granted(bucket, answer)

    def _granted(self, bucket: str, answer: bytes | str) -> float:
        """Remember what Redis answered (a lease or a refusal); the wait for this call."""
        granted_text, wait_text = answer.split()
        granted, wait, now = int(granted_text), float(wait_text), self._now()
        if granted == 0:
            self._keep(bucket, _REFUSED, now + wait)
            return wait
        self._keep(bucket, granted - 1, now + LEASE_TTL_S)
        return 0.0

    async def _forget(self, bucket: str) -> None:
        self._local.pop(bucket, None)
        try:
            await self._redis.delete(f"{self._prefix}:{bucket}")
        except (RedisError, OSError) as exc:
            # The bucket refills at its rate anyway: a lost reset only leaves it stricter.
            log.warning("rate limiter: Redis did not answer (%s); bucket not reset", exc)

    def _keep(self, bucket: str, tokens: int, until: float) -> None:
        if tokens == 0:  # a lease spent: the next call asks Redis
            self._local.pop(bucket, None)
            return
        self._local[bucket] = (tokens, until)
        self._local.move_to_end(bucket)
        while len(self._local) > MAX_BUCKETS:
            self._local.popitem(last=False)

    async def close(self) -> None:
        await self._redis.aclose()
