"""One contract for every WorkerGroup: in-process and Redis (members in separate processes).

Each Redis test uses its own group name. "Members" are group instances: with Redis they
share state as separate worker processes would; in memory they share one roster.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from redis import asyncio as aioredis

from chat_adapters.memory.worker_group import InMemoryWorkerGroup
from chat_adapters.redis.worker_group import RedisWorkerGroup
from chat_domain.errors import Unavailable
from chat_domain.ports.worker_group import (
    BalancePolicy,
    PartitionPlan,
    WorkerGroup,
    assign_partitions,
)
from tests.support.processes import free_port
from tests.support.services import REDIS, require

Members = Callable[..., WorkerGroup]
WAIT = 10.0


@pytest.fixture(params=["memory", "redis"])
async def member(request: pytest.FixtureRequest) -> AsyncIterator[Members]:
    """``member(lease_seconds=...)`` is one more member of one group."""
    made: list[WorkerGroup] = []
    if request.param == "memory":
        first = InMemoryWorkerGroup()

        def make(lease_seconds: float = 4.0, policy: BalancePolicy | None = None) -> WorkerGroup:
            group = first.another_member(lease_seconds, policy=policy)
            made.append(group)
            return group

    else:
        require(REDIS)
        name = f"test-group-{uuid.uuid4().hex[:12]}"

        def make(lease_seconds: float = 4.0, policy: BalancePolicy | None = None) -> WorkerGroup:
            group = RedisWorkerGroup(REDIS.url, name, lease_seconds=lease_seconds, policy=policy)
            made.append(group)
            return group

    yield make
    for group in made:
        await group.leave()
        await group.close()


async def until_members(group: WorkerGroup, expected: set[str]) -> None:
    """Heartbeat until the live members are ``expected`` (a lease running out is the event)."""

    async def poll() -> None:
        while True:
            if set(await group.heartbeat()) == expected:
                return
            await asyncio.sleep(group.heartbeat_seconds)  # as a member beats: no event to await

    await asyncio.wait_for(poll(), WAIT)


async def test_a_member_alone_is_the_group_and_owns_every_partition(member: Members) -> None:
    a = member()
    assert await a.heartbeat() == [a.member_id]
    assert assign_partitions(32, await a.heartbeat()) == {a.member_id: frozenset(range(32))}


async def test_members_see_each_other_sorted(member: Members) -> None:
    a, b, c = member(), member(), member()
    await a.heartbeat()
    await b.heartbeat()
    seen = await c.heartbeat()
    assert seen == sorted([a.member_id, b.member_id, c.member_id])
    assert await a.heartbeat() == seen
    assert len(set(seen)) == 3  # ids are unique


async def test_a_member_that_leaves_is_gone_at_once_and_can_come_back(member: Members) -> None:
    a, b = member(), member()
    await a.heartbeat()
    await b.heartbeat()
    await b.leave()
    assert await a.heartbeat() == [a.member_id]
    await b.heartbeat()
    assert set(await a.heartbeat()) == {a.member_id, b.member_id}


async def test_a_silent_member_expires_after_its_lease(member: Members) -> None:
    a, silent = member(), member(lease_seconds=0.3)
    await silent.heartbeat()
    assert set(await a.heartbeat()) == {a.member_id, silent.member_id}
    await until_members(a, {a.member_id})  # silent never beats again: its lease runs out
    assert await silent.heartbeat() == sorted([a.member_id, silent.member_id])  # it rejoins


async def test_members_agree_on_a_balanced_disjoint_assignment(member: Members) -> None:
    group = [member() for _ in range(3)]
    for m in group:
        await m.heartbeat()
    views = [assign_partitions(32, await m.heartbeat()) for m in group]
    assert views[0] == views[1] == views[2]
    owned = [views[0][m.member_id] for m in group]
    assert sorted(p for mine in owned for p in mine) == list(range(32))  # each once
    assert max(map(len, owned)) - min(map(len, owned)) <= 1


async def test_members_add_up_the_messages_handled_per_partition(member: Members) -> None:
    a, b = member(), member()
    before = (await a.beat({})).counted
    await a.beat({0: 5, 3: 2})
    view = await b.beat({0: 1, 7: 0})
    assert view.members == sorted([a.member_id, b.member_id])
    assert {p: view.counted.get(p, 0) - before.get(p, 0) for p in (0, 3, 7)} == {
        0: 6,
        3: 2,
        7: 0,
    }


def plan(epoch: int, members: list[str]) -> PartitionPlan:
    owners = tuple(members[p % len(members)] for p in range(8))
    loads = tuple(0.125 for _ in range(8))
    return PartitionPlan(epoch, tuple(members), owners, loads, tuple(range(8)), 12.5)


async def test_a_plan_is_stored_only_over_the_epoch_before_it(member: Members) -> None:
    a, b = member(), member()
    ids = sorted([a.member_id, b.member_id])
    assert (await a.beat({})).plan is None
    assert await a.propose(plan(1, ids))
    assert not await b.propose(plan(1, ids[:1]))  # a concurrent first plan loses
    assert not await b.propose(plan(3, ids[:1]))  # so does one skipping an epoch
    assert (await b.beat({})).plan == plan(1, ids)  # read back as written
    assert await b.propose(plan(2, ids[:1]))
    assert (await a.beat({})).plan == plan(2, ids[:1])


async def shares(group: list[WorkerGroup], partitions: int = 32) -> list[frozenset[int]]:
    """Two rounds of ``share`` (the leader's plan is read by the others at the next)."""
    for m in group:
        await m.share(partitions, {})
    return [await m.share(partitions, {}) for m in group]


def assert_split(owned: list[frozenset[int]], partitions: int = 32) -> None:
    assert sorted(p for mine in owned for p in mine) == list(range(partitions))  # each once


async def test_members_sharing_agree_and_follow_joins_and_leaves(member: Members) -> None:
    a, b, c = member(), member(), member()
    owned = await shares([a, b])
    assert_split(owned)
    assert max(map(len, owned)) - min(map(len, owned)) <= 1  # no loads yet: by count

    owned = await shares([a, b, c])
    assert_split(owned)
    assert all(owned)

    await b.leave()
    kept = {m.member_id: mine for m, mine in zip([a, c], owned[::2], strict=True)}
    owned = await shares([a, c])
    assert_split(owned)
    assert kept[a.member_id] <= owned[0] and kept[c.member_id] <= owned[1]  # only b's moved


async def test_members_balance_the_messages_they_report(member: Members) -> None:
    policy = BalancePolicy(tolerance=0.15, interval_seconds=0.01, min_messages=10)
    a, b = member(policy=policy), member(policy=policy)
    owned = await shares([a, b], partitions=8)
    busy = min(owned[0])  # one partition of a's carries most of the messages
    for _ in range(3):
        await asyncio.sleep(0.02)  # past the plan's interval on the group's clock
        for m, mine in zip([a, b], owned, strict=True):  # each reports what it holds
            await m.share(8, {p: (700 if p == busy else 10) for p in mine})
        owned = await shares([a, b], partitions=8)
    assert_split(owned, 8)
    mine = owned[0] if busy in owned[0] else owned[1]
    assert mine == {busy}  # the busy partition alone on one member, the rest on the other


async def test_an_unreadable_plan_in_redis_is_replaced_by_the_leader() -> None:
    require(REDIS)
    name = f"test-group-{uuid.uuid4().hex[:12]}"
    a = RedisWorkerGroup(REDIS.url, name)
    try:
        client = aioredis.Redis.from_url(REDIS.url)
        await client.hset(f"{name}:worker-group:plan", mapping={"epoch": 5, "plan": "{oops"})
        await client.aclose()
        assert await a.share(8, {}) == frozenset(range(8))  # alone: every partition
        view = await a.beat({})
        assert view.plan is not None and view.plan.epoch == 6
    finally:
        await a.leave()
        await a.close()


async def test_unreachable_redis_is_unavailable() -> None:
    group = RedisWorkerGroup(f"redis://127.0.0.1:{free_port()}/0", "nowhere", lease_seconds=1)
    try:
        with pytest.raises(Unavailable):
            await group.heartbeat()
        with pytest.raises(Unavailable):
            await group.leave()
        with pytest.raises(Unavailable):
            await group.share(32, {0: 1})
    finally:
        await group.close()


# --- the assignment every member computes (pure) ----------------------------------


def names(count: int) -> list[str]:
    return [f"host-{i}-{uuid.uuid5(uuid.NAMESPACE_DNS, str(i)).hex[:6]}" for i in range(count)]


@pytest.mark.parametrize("partitions", [1, 7, 8, 32, 100])
@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 40])
def test_assignment_is_balanced_within_one_and_covers_each_partition_once(
    partitions: int, count: int
) -> None:
    assigned = assign_partitions(partitions, names(count))
    sizes = [len(owned) for owned in assigned.values()]
    assert set(assigned) == set(names(count))
    assert max(sizes) - min(sizes) <= 1
    assert sorted(p for owned in assigned.values() for p in owned) == list(range(partitions))


def test_assignment_does_not_depend_on_the_order_members_are_listed() -> None:
    members = names(5)
    assert assign_partitions(32, members) == assign_partitions(32, list(reversed(members)))


@pytest.mark.parametrize("count", [1, 2, 3, 4, 6])
def test_a_member_joining_moves_about_its_share_not_the_whole_layout(count: int) -> None:
    before = assign_partitions(32, names(count))
    after = assign_partitions(32, names(count + 1))
    owner_before = {p: m for m, owned in before.items() for p in owned}
    owner_after = {p: m for m, owned in after.items() for p in owned}
    moved = sum(owner_before[p] != owner_after[p] for p in range(32))
    share = -(-32 // (count + 1))  # what the newcomer must take at least
    assert moved <= 2 * share  # contiguous ranges would move about half of them
