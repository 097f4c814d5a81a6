"""Token buckets in the process: rate limits for one node (embedded mode, tests)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from chat_domain.ports.rate_limit import RateLimiter, RateRule


class InMemoryRateLimiter(RateLimiter):
    """One bucket per key in a dict; the least recently used go when there are too many.

    Forgetting a bucket only ever hands its key a full bucket again, so the cap bounds
    memory (a flood of distinct addresses cannot grow it without limit) at the cost of
    a little leniency under such a flood.
    """

    def __init__(
        self, max_buckets: int = 100_000, now: Callable[[], float] = time.monotonic
    ) -> None:
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._max_buckets, self._now = max_buckets, now

    async def _take(self, bucket: str, rule: RateRule) -> float:
        now = self._now()
        tokens, at = self._buckets.pop(bucket, (float(rule.burst), now))
        tokens = min(float(rule.burst), tokens + (now - at) * rule.per_second)
        retry_after = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            retry_after = (1.0 - tokens) / rule.per_second
        self._buckets[bucket] = (tokens, now)
        while len(self._buckets) > self._max_buckets:
            self._buckets.popitem(last=False)
        return retry_after

    async def _forget(self, bucket: str) -> None:
        self._buckets.pop(bucket, None)
