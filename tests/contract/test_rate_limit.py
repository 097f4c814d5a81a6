"""The RateLimiter port, one set of asserts for every adapter: in memory, and Redis (Lua)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from chat_adapters.memory.rate_limit import InMemoryRateLimiter
from chat_adapters.redis.rate_limit import LEASE, RedisRateLimiter
from chat_domain.errors import RateLimited
from chat_domain.ports.rate_limit import RateLimiter, RateRule
from tests.support.services import REDIS, require


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    if request.param == "memory":
        yield InMemoryRateLimiter()
        return
    redis = RedisRateLimiter(require(REDIS).url, prefix=f"test-rate-{uuid.uuid4().hex}")
    yield redis
    await redis.close()


def key() -> str:
    return uuid.uuid4().hex


async def test_a_burst_passes_then_the_next_call_is_refused(limiter: RateLimiter) -> None:
    rule, who = RateRule("send", per_second=1.0, burst=5), key()
    for _ in range(5):
        await limiter.acquire(who, rule)
    with pytest.raises(RateLimited) as refused:
        await limiter.acquire(who, rule)
    assert refused.value.code == "rate_limited"
    assert 0 < refused.value.retry_after <= 1.0


async def test_keys_and_rules_have_separate_buckets(limiter: RateLimiter) -> None:
    rule, other_rule, who = RateRule("a", 1.0, 1), RateRule("b", 1.0, 1), key()
    await limiter.acquire(who, rule)
    await limiter.acquire(key(), rule)  # another user
    await limiter.acquire(who, other_rule)  # another kind of call
    with pytest.raises(RateLimited):
        await limiter.acquire(who, rule)


async def test_tokens_come_back_at_the_rate(limiter: RateLimiter) -> None:
    rule, who = RateRule("fast", per_second=20.0, burst=1), key()
    await limiter.acquire(who, rule)
    with pytest.raises(RateLimited) as refused:
        await limiter.acquire(who, rule)
    # Waiting what the refusal said is enough: that is the promise of Retry-After.
    await asyncio.sleep(refused.value.retry_after + 0.01)
    await limiter.acquire(who, rule)


async def test_a_rule_set_to_zero_is_off(limiter: RateLimiter) -> None:
    off, who = RateRule("off", per_second=0.0, burst=0), key()
    for _ in range(50):
        await limiter.acquire(who, off)


async def test_concurrent_calls_never_exceed_the_burst(limiter: RateLimiter) -> None:
    rule, who = RateRule("race", per_second=0.001, burst=10), key()
    results = await asyncio.gather(
        *(limiter.acquire(who, rule) for _ in range(40)), return_exceptions=True
    )
    assert sum(r is None for r in results) == 10
    assert all(isinstance(r, RateLimited) for r in results if r is not None)


async def test_a_roomy_bucket_admits_exactly_its_burst(limiter: RateLimiter) -> None:
    # Redis leases such a bucket's tokens to a node a few at a time: still exact.
    rule, who = RateRule("roomy", per_second=0.001, burst=4 * LEASE + 3), key()
    for _ in range(rule.burst):
        await limiter.acquire(who, rule)
    with pytest.raises(RateLimited):
        await limiter.acquire(who, rule)


async def test_nodes_leasing_tokens_never_admit_more_than_the_bucket_holds() -> None:
    url, prefix = require(REDIS).url, f"test-rate-{uuid.uuid4().hex}"
    nodes = [RedisRateLimiter(url, prefix=prefix) for _ in range(3)]
    rule, who = RateRule("shared", per_second=0.001, burst=5 * LEASE + 1), key()
    try:
        results = await asyncio.gather(
            *(node.acquire(who, rule) for node in nodes for _ in range(2 * rule.burst)),
            return_exceptions=True,
        )
    finally:
        for node in nodes:
            await node.close()
    # Some tokens sit unused in a node's lease: never more admitted, at most LEASE - 1
    # fewer per node.
    admitted = sum(r is None for r in results)
    assert rule.burst - len(nodes) * (LEASE - 1) <= admitted <= rule.burst
    assert all(isinstance(r, RateLimited) for r in results if r is not None)


async def test_calls_waiting_on_a_redis_that_hangs_pass_with_the_first() -> None:
    """A Redis that accepts and never answers: concurrent calls of one bucket let through
    together after one timeout, instead of each asking in turn (a timeout each)."""
    connections = 0

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{port}/0")
    rule = RateRule("hung", per_second=1.0, burst=4 * LEASE)
    try:
        await asyncio.gather(*(limiter.acquire("x", rule) for _ in range(5)))
    finally:
        await limiter.close()
        server.close()
    assert connections == 1


async def test_memory_limiter_forgets_the_oldest_buckets_beyond_its_cap() -> None:
    limiter, rule = InMemoryRateLimiter(max_buckets=3), RateRule("cap", 0.001, 1)
    first = key()
    await limiter.acquire(first, rule)
    for _ in range(3):
        await limiter.acquire(key(), rule)
    await limiter.acquire(first, rule)  # forgotten: a full bucket again (bounded memory)


async def test_redis_limiter_lets_calls_through_when_redis_is_down() -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0")
    rule = RateRule("down", 0.001, 1)
    await limiter.acquire("x", rule)
    await limiter.acquire("x", rule)  # no Redis, no bucket: the chat keeps working
    await limiter.close()


async def test_reset_fills_a_bucket_again(limiter: RateLimiter) -> None:
    rule, who, other = RateRule("login", per_second=0.001, burst=2), key(), key()
    for _ in range(2):
        await limiter.acquire(who, rule)
        await limiter.acquire(other, rule)
    await limiter.reset(who, rule)
    for _ in range(2):
        await limiter.acquire(who, rule)
    with pytest.raises(RateLimited):
        await limiter.acquire(who, rule)
    with pytest.raises(RateLimited):  # only that bucket was reset
        await limiter.acquire(other, rule)


async def test_reset_of_a_roomy_bucket_forgets_the_node_lease_and_refusal(
    limiter: RateLimiter,
) -> None:
    rule, who = RateRule("roomy-reset", per_second=0.001, burst=4 * LEASE), key()
    for _ in range(rule.burst):
        await limiter.acquire(who, rule)
    with pytest.raises(RateLimited):
        await limiter.acquire(who, rule)  # remembered by a Redis node until its retry-after
    await limiter.reset(who, rule)
    for _ in range(rule.burst):
        await limiter.acquire(who, rule)
