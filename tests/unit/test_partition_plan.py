"""The load-aware partition plan (pure): balance bound, stickiness, determinism, churn."""

from __future__ import annotations

import random
import uuid
from dataclasses import replace

import pytest

from chat_domain.partition_plan import (
    BalancePolicy,
    GroupView,
    PartitionPlan,
    assign_partitions,
    follow,
    next_plan,
    rebalance,
    spread,
    weights,
)

POLICY = BalancePolicy(tolerance=0.15, interval_seconds=10.0, min_messages=500)


def names(count: int) -> list[str]:
    return [f"host-{i}-{uuid.uuid5(uuid.NAMESPACE_DNS, str(i)).hex[:6]}" for i in range(count)]


def skewed(partitions: int, seed: int) -> list[float]:
    """Shares of messages like the bench's mixed workload: most partitions hold a few small
    rooms, two hold a big room each (7.5% of the messages apiece) on top."""
    rng = random.Random(seed)
    raw = [rng.uniform(0.5, 1.5) for _ in range(partitions)]
    total = sum(raw)
    loads = [0.85 * r / total for r in raw]
    for hot in rng.sample(range(partitions), 2):
        loads[hot] += 0.075
    return loads


def member_loads(owners: tuple[str, ...], members: list[str], weight: list[float]) -> dict:
    load = dict.fromkeys(members, 0.0)
    for p, o in enumerate(owners):
        load[o] += weight[p]
    return load


def by_count(partitions: int, members: list[str]) -> tuple[str, ...]:
    shares = assign_partitions(partitions, members)
    return tuple(next(m for m in members if p in shares[m]) for p in range(partitions))


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("count", [2, 3, 4, 8])
def test_a_skewed_load_is_brought_within_the_tolerance(seed: int, count: int) -> None:
    members = names(count)
    weight = weights(skewed(32, seed), 32)
    owners = rebalance(by_count(32, members), members, weight, POLICY.tolerance)
    assert sorted(set(owners)) == sorted(members)  # every member works
    assert spread(member_loads(owners, members, weight)) <= POLICY.tolerance


def test_a_spread_within_the_tolerance_moves_nothing() -> None:
    members = names(4)
    owners = by_count(32, members)
    weight = [1.0 + 0.01 * (p % 3) for p in range(32)]  # nearly even already
    assert spread(member_loads(owners, members, weight)) <= POLICY.tolerance
    assert rebalance(owners, members, weight, POLICY.tolerance) == owners


def test_rebalancing_a_balanced_plan_again_changes_nothing() -> None:
    members = names(4)
    weight = weights(skewed(32, 7), 32)
    once = rebalance(by_count(32, members), members, weight, POLICY.tolerance)
    assert rebalance(once, members, weight, POLICY.tolerance) == once


def test_moves_are_few_not_a_reshuffle() -> None:
    members = names(4)
    start = by_count(32, members)
    weight = weights(skewed(32, 3), 32)
    moved = sum(a != b for a, b in zip(start, rebalance(start, members, weight, 0.15), strict=True))
    assert moved <= 8  # a quarter of the partitions at most


def test_a_hot_partition_larger_than_a_fair_share_stays_alone_without_flapping() -> None:
    members = names(2)
    weight = [5.0] + [0.1] * 7
    owners = rebalance(by_count(8, members), members, weight, POLICY.tolerance)
    hot = owners[0]
    assert [o for o in owners if o == hot] == [hot]  # the rest went to the other member
    assert rebalance(owners, members, weight, POLICY.tolerance) == owners  # and it stays


def test_the_result_does_not_depend_on_the_order_members_are_listed() -> None:
    members = names(5)
    weight = weights(skewed(32, 1), 32)
    start = by_count(32, members)
    assert rebalance(start, members, weight, 0.15) == rebalance(
        start, list(reversed(members)), weight, 0.15
    )


def test_a_leaving_members_partitions_go_to_the_others_and_nothing_else_moves() -> None:
    members = names(4)
    weight = weights(skewed(32, 5), 32)
    before = rebalance(by_count(32, members), members, weight, 0.15)
    after = rebalance(before, members[:3], weight, 0.15)
    assert set(after) <= set(members[:3])
    moved = [p for p in range(32) if before[p] != after[p]]
    assert all(before[p] == members[3] for p in moved)  # only the leaver's, when in bounds
    assert spread(member_loads(after, members[:3], weight)) <= 0.15


def test_a_joining_member_takes_about_its_share() -> None:
    members = names(3)
    weight = weights(skewed(32, 9), 32)
    before = rebalance(by_count(32, members), members, weight, 0.15)
    joined = [*members, names(4)[3]]
    after = rebalance(before, joined, weight, 0.15)
    moved = [p for p in range(32) if before[p] != after[p]]
    assert sum(after[p] == joined[3] for p in moved) >= len(moved) / 2  # mostly to it
    assert spread(member_loads(after, joined, weight)) <= 0.15
    assert len(moved) <= 12


def test_more_members_than_partitions_leaves_some_without_any() -> None:
    members = names(5)
    owners = rebalance(("",) * 3, members, [1.0, 1.0, 1.0], 0.15)
    assert len(set(owners)) == 3


def view(
    members: list[str], counted: dict[int, int], plan: PartitionPlan | None, now: float
) -> GroupView:
    return GroupView(sorted(members), counted, plan, now)


def test_the_first_plan_is_by_count_and_every_member_follows_it() -> None:
    members = names(3)
    first = next_plan(view(members, {}, None, 100.0), 32, POLICY)
    assert first is not None and first.epoch == 1 and first.loads is None
    assert first.assignment() == assign_partitions(32, members)
    assert follow(first, 32, members, POLICY) == assign_partitions(32, members)
    assert next_plan(view(members, {}, first, 101.0), 32, POLICY) is None  # it stands


def test_loads_are_read_only_after_the_interval_and_enough_messages() -> None:
    members = names(2)
    first = next_plan(view(members, {}, None, 100.0), 8, POLICY)
    assert first is not None
    heavy = {0: 2000, 1: 10}
    assert next_plan(view(members, heavy, first, 105.0), 8, POLICY) is None  # too soon
    assert next_plan(view(members, {0: 100}, first, 120.0), 8, POLICY) is None  # too few
    read = next_plan(view(members, heavy, first, 120.0), 8, POLICY)
    assert read is not None and read.epoch == 2 and read.loads is not None
    assert read.loads[0] > 0.9 and read.since == 120.0
    assert read.counted[:2] == (2000, 10)
    owners = read.owners
    assert [o for o in owners if o == owners[0]] == [owners[0]]  # the hot one alone


def test_a_new_reading_is_blended_with_the_last() -> None:
    members = names(2)
    first = next_plan(view(members, {}, None, 0.0), 4, POLICY)
    assert first is not None
    loaded = replace(first, loads=(0.25, 0.25, 0.25, 0.25))
    read = next_plan(view(members, {0: 1000}, loaded, 20.0), 4, POLICY)
    assert read is not None and read.loads == (0.625, 0.125, 0.125, 0.125)


def test_counters_that_went_back_start_a_new_window() -> None:
    members = names(2)
    first = next_plan(view(members, {0: 5000}, None, 0.0), 4, POLICY)
    assert first is not None
    restarted = next_plan(view(members, {0: 3}, first, 20.0), 4, POLICY)
    assert restarted is not None and restarted.since == 20.0 and restarted.loads is None


def test_members_that_changed_follow_the_same_interim_until_the_leader_writes() -> None:
    members = names(4)
    loads = tuple(skewed(32, 2))
    plan = replace(
        PartitionPlan(3, tuple(members), by_count(32, members), loads, (0,) * 32, 0.0),
        owners=rebalance(by_count(32, members), members, weights(loads, 32), 0.15),
    )
    survivors = members[:3]
    interim = follow(plan, 32, survivors, POLICY)
    assert interim == follow(plan, 32, list(reversed(survivors)), POLICY)
    written = next_plan(view(survivors, {}, plan, 1.0), 32, POLICY)
    assert written is not None and written.assignment() == interim  # what they followed
    for member in survivors:
        assert plan.assignment()[member] <= interim[member]  # kept what they had


def test_balancing_by_count_ignores_the_plan() -> None:
    members = names(3)
    policy = replace(POLICY, by_load=False)
    plan = PartitionPlan(1, tuple(members), (members[0],) * 32, None, (0,) * 32, 0.0)
    assert follow(plan, 32, members, policy) == assign_partitions(32, members)


def test_a_plan_for_another_partition_count_is_replaced() -> None:
    members = names(2)
    old = PartitionPlan(4, tuple(members), (members[0],) * 16, None, (0,) * 16, 0.0)
    assert follow(old, 32, members, POLICY) == assign_partitions(32, members)
    new = next_plan(view(members, {}, old, 1.0), 32, POLICY)
    assert new is not None and new.epoch == 5 and len(new.owners) == 32


def test_a_plan_survives_its_stored_form() -> None:
    plan = PartitionPlan(2, ("a", "b"), ("a", "b", "a"), (0.5, 0.25, 0.25), (4, 2, 2), 1.5)
    assert PartitionPlan.from_dict(plan.as_dict()) == plan
    unmeasured = replace(plan, loads=None)
    assert PartitionPlan.from_dict(unmeasured.as_dict()) == unmeasured


@pytest.mark.parametrize("tolerance", [0.0, 1.0])
def test_a_tolerance_out_of_bounds_is_refused(tolerance: float) -> None:
    with pytest.raises(ValueError):
        BalancePolicy(tolerance=tolerance)


def test_steady_noisy_readings_settle_instead_of_flapping() -> None:
    """At 100 msg/s, readings of 1,000 messages over 4 members: Poisson noise alone."""
    members = names(4)
    rng = random.Random(4)
    truth = skewed(32, 11)
    plan = next_plan(view(members, {}, None, 0.0), 32, POLICY)
    assert plan is not None
    counted = [0] * 32
    moves = []
    for step in range(1, 31):
        for _ in range(1000):
            counted[rng.choices(range(32), truth)[0]] += 1
        proposed = next_plan(view(members, dict(enumerate(counted)), plan, step * 10.0), 32, POLICY)
        if proposed is not None:
            moves.append(sum(a != b for a, b in zip(plan.owners, proposed.owners, strict=True)))
            plan = proposed
    assert sum(moves[:2]) > 0  # it balanced early
    assert sum(moves[5:]) <= 2  # then stayed (a stray move at most)
    weight = weights(truth, 32)
    assert spread(member_loads(plan.owners, members, weight)) <= POLICY.tolerance
