"""Token buckets in Redis: one budget per key across every server node."""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from chat_adapters.redis.client import redis_client
from chat_domain.ports.rate_limit import RateLimiter, RateRule

log = logging.getLogger("chat.rate_limit")

# KEYS[1] the bucket; ARGV: refill per second, burst. Time is Redis' own clock, so nodes
# with skewed clocks share one bucket correctly. Answers the wait in seconds as a
# string (Lua numbers become integers on the way out). The key expires once the bucket
# would be full again, so idle buckets cost nothing.
_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
           'at', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return string.format('%.6f', wait)
"""


class RedisRateLimiter(RateLimiter):
    """A Lua token bucket per key, atomic in Redis.

    If Redis does not answer, the call passes (and a warning is logged): a rate limit
    protects the service from abuse; it must not take the chat down with it.
    """

    def __init__(self, url: str, prefix: str = "chat:rate") -> None:
        self._redis: Redis = redis_client(url, wait_for_connection=2.0, socket_timeout=2.0)
        self._script = self._redis.register_script(_TOKEN_BUCKET)
        self._prefix = prefix

    async def _take(self, bucket: str, rule: RateRule) -> float:
        try:
            wait = await self._script(
                keys=[f"{self._prefix}:{bucket}"], args=[rule.per_second, rule.burst]
            )
        except (RedisError, OSError) as exc:
            log.warning("rate limiter: Redis did not answer (%s); letting the call through", exc)
            return 0.0
        return float(wait)

    async def close(self) -> None:
        await self._redis.aclose()
