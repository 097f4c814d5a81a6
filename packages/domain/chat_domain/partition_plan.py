"""Which worker consumes which partition, balanced by measured load (pure functions).

Equal partition counts are not equal work: a room always lands in one partition, so a
partition holding a busy room carries several times the messages of another. The group
therefore keeps a *plan* in its store: every partition's owner, and each partition's
share of the messages handled, measured from counters that every member adds to. The
lowest member id (the leader) writes each next plan; every member follows the stored one,
so they agree without computing from different readings. The rules:

* Sticky: a partition moves only when its owner left, or when the members' loads differ
  by more than ``tolerance`` (``(max - min) / max``); then as few partitions move as bring
  the spread under half of it (hysteresis), each step from the busiest member to the
  idlest (one partition, or a swap for a lighter one).
* Loads are re-measured at most every ``interval_seconds`` and only over at least
  ``min_messages`` messages, blended with the previous reading, so that noise at a low
  rate moves nothing.
* Whoever joins or leaves, every member derives the same interim assignment from the
  stored plan and the live members (``follow``) until the leader writes the next plan.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

# A partition's weight beyond its measured share of messages, as a fraction of the mean:
# idle partitions still spread (a burst in one costs nothing to take over), and a member
# never gathers dozens of them.
IDLE_WEIGHT = 0.1
# The weight of a new reading against the previous one.
BLEND = 0.5


@dataclass(frozen=True)
class BalancePolicy:
    """How the group balances partitions; every member must use the same one."""

    by_load: bool = True  # False: equal partition counts by rendezvous hashing only
    tolerance: float = 0.15  # the members' spread of load tolerated before moving any
    interval_seconds: float = 10.0  # loads re-measured at most this often
    min_messages: int = 500  # ... and over at least this many messages

    def __post_init__(self) -> None:
        if not 0 < self.tolerance < 1:
            raise ValueError("tolerance must be between 0 and 1")
        if self.interval_seconds <= 0 or self.min_messages < 1:
            raise ValueError("interval_seconds and min_messages must be positive")


@dataclass(frozen=True)
class PartitionPlan:
    """The group's agreed assignment, as stored (``epoch`` counts the plans written).

    ``owners[p]`` consumes partition ``p``; ``members`` are the live members it was made
    for (one may own nothing). ``loads[p]`` is partition ``p``'s share of the messages
    (summing to 1), ``None`` before the first reading. The current reading's window began
    at ``since`` (the group's clock, seconds) when the group's counters read ``counted``.
    """

    epoch: int
    members: tuple[str, ...]
    owners: tuple[str, ...]
    loads: tuple[float, ...] | None
    counted: tuple[int, ...]
    since: float

    def assignment(self) -> dict[str, frozenset[int]]:
        return _by_member(self.members, self.owners)

    def as_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "members": list(self.members),
            "owners": list(self.owners),
            "loads": None if self.loads is None else list(self.loads),
            "counted": list(self.counted),
            "since": self.since,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PartitionPlan:
        loads = data.get("loads")
        return cls(
            epoch=int(data["epoch"]),
            members=tuple(str(m) for m in data["members"]),
            owners=tuple(str(o) for o in data["owners"]),
            loads=None if loads is None else tuple(float(x) for x in loads),
            counted=tuple(int(c) for c in data["counted"]),
            since=float(data["since"]),
        )


@dataclass(frozen=True)
class GroupView:
    """What one heartbeat reads: the live members (sorted), the group's count of messages
    handled per partition (by every member, ever), the stored plan, the group's clock, and
    the stored plan's epoch (0: none; the plan may be unreadable, the epoch is not)."""

    members: list[str]
    counted: Mapping[int, int]
    plan: PartitionPlan | None
    now: float
    epoch: int = 0

    def __post_init__(self) -> None:
        if self.plan is not None and self.epoch < self.plan.epoch:
            object.__setattr__(self, "epoch", self.plan.epoch)


def spread(loads: Mapping[str, float]) -> float:
    """``(max - min) / max`` of the members' loads: 0 when even, 1 when one has nothing."""
    if not loads:
        return 0.0
    high, low = max(loads.values()), min(loads.values())
    return 0.0 if high <= 0 else (high - low) / high


def weights(loads: Sequence[float] | None, partitions: int) -> list[float]:
    """Each partition's weight: its share of messages plus ``IDLE_WEIGHT`` of the mean;
    equal weights before any reading (balancing by count)."""
    if loads is None or len(loads) != partitions or sum(loads) <= 0:
        return [1.0] * partitions
    mean = sum(loads) / partitions
    return [max(load, 0.0) + IDLE_WEIGHT * mean for load in loads]


def rebalance(
    owners: Sequence[str | None], members: Sequence[str], weight: Sequence[float], tolerance: float
) -> tuple[str, ...]:
    """The next owners: deterministic for the same arguments, and sticky.

    Partitions whose owner is not a member go, heaviest first, to the least loaded member.
    Then, only if the members' loads spread by more than ``tolerance``, the busiest
    member gives the idlest one partition, or swaps one for a lighter one of the idlest's
    (whichever evens the pair best, a move before a swap), until the spread is under half
    of it or no step narrows the gap.
    """
    live = sorted(set(members))
    if not live:
        raise ValueError("no members to own the partitions")
    owner: list[str] = [o if o in live else "" for o in owners]
    load = dict.fromkeys(live, 0.0)
    for p, o in enumerate(owner):
        if o:
            load[o] += weight[p]
    for p in sorted((p for p, o in enumerate(owner) if not o), key=lambda p: (-weight[p], p)):
        taker = min(live, key=lambda m: (load[m], m))
        owner[p] = taker
        load[taker] += weight[p]
    if spread(load) <= tolerance:
        return tuple(owner)
    for _ in range(len(owner) * len(live)):  # each step shrinks the sum of squares: finite
        if spread(load) <= tolerance / 2:
            break
        busiest = max(live, key=lambda m: (load[m], m))
        idlest = min(live, key=lambda m: (load[m], m))
        step = _best_step(owner, weight, busiest, idlest, load[busiest] - load[idlest])
        if step is None:
            break
        given, taken = step
        owner[given] = idlest
        load[busiest] -= weight[given]
        load[idlest] += weight[given]
        if taken is not None:
            owner[taken] = busiest
            load[idlest] -= weight[taken]
            load[busiest] += weight[taken]
    return tuple(owner)


def _best_step(
    owner: Sequence[str], weight: Sequence[float], busiest: str, idlest: str, gap: float
) -> tuple[int, int | None] | None:
    """The partition ``busiest`` gives ``idlest`` (and the one it takes back, for a swap)
    that brings their loads closest together; ``None`` if no step narrows the gap."""
    given = [p for p, o in enumerate(owner) if o == busiest]
    taken = [p for p, o in enumerate(owner) if o == idlest]
    steps: list[tuple[float, int, int, int]] = []  # (miss, partitions moved, given, taken)
    for p in given:
        if 0 < weight[p] < gap:
            steps.append((abs(gap / 2 - weight[p]), 1, p, -1))
        for q in taken:
            shift = weight[p] - weight[q]
            if 0 < shift < gap:
                steps.append((abs(gap / 2 - shift), 2, p, q))
    if not steps:
        return None
    _, _, p, q = min(steps)
    return p, None if q < 0 else q


def follow(
    plan: PartitionPlan | None, partitions: int, members: Sequence[str], policy: BalancePolicy
) -> dict[str, frozenset[int]]:
    """What each member consumes now: the stored plan if it was made for these members;
    else the plan adjusted to them by ``rebalance`` on its own loads (every member derives
    the same until the leader writes the next plan); with no usable plan, or balancing by
    count, ``assign_partitions``."""
    live = sorted(set(members))
    if not live:
        return {}
    if not policy.by_load or plan is None or len(plan.owners) != partitions:
        return assign_partitions(partitions, live)
    if list(plan.members) == live:
        return plan.assignment()
    owners = rebalance(plan.owners, live, weights(plan.loads, partitions), policy.tolerance)
    return _by_member(live, owners)


def next_plan(view: GroupView, partitions: int, policy: BalancePolicy) -> PartitionPlan | None:
    """The plan the leader writes after reading ``view``, or ``None`` if the stored one
    stands: a new one when there is none (by rendezvous), when the members changed, or
    when a reading is due (``interval_seconds`` and ``min_messages`` reached)."""
    live = tuple(sorted(set(view.members)))
    counted = tuple(view.counted.get(p, 0) for p in range(partitions))
    plan = view.plan
    if not live:
        return None
    if plan is None or len(plan.owners) != partitions or len(plan.counted) != partitions:
        shares = assign_partitions(partitions, live)
        owners = tuple(next(m for m in live if p in shares[m]) for p in range(partitions))
        return PartitionPlan(view.epoch + 1, live, owners, None, counted, view.now)
    loads, window = plan.loads, (plan.counted, plan.since)
    handled = [now - then for now, then in zip(counted, plan.counted, strict=True)]
    if any(h < 0 for h in handled):  # the counters were reset (store lost): start again
        window = (counted, view.now)
    elif view.now - plan.since >= policy.interval_seconds and sum(handled) >= policy.min_messages:
        total = sum(handled)
        reading = [h / total for h in handled]
        if loads is not None:
            reading = [BLEND * r + (1 - BLEND) * old for r, old in zip(reading, loads, strict=True)]
        loads, window = tuple(reading), (counted, view.now)
    owners = rebalance(plan.owners, live, weights(loads, partitions), policy.tolerance)
    proposed = replace(
        plan,
        epoch=view.epoch + 1,
        members=live,
        owners=owners,
        loads=loads,
        counted=window[0],
        since=window[1],
    )
    if replace(proposed, epoch=plan.epoch) == plan:
        return None
    return proposed


def assign_partitions(partitions: int, members: Sequence[str]) -> dict[str, frozenset[int]]:
    """Which partitions each member consumes: the same answer for the same members.

    Balanced: every member gets ``partitions // len(members)`` partitions or one more.
    Stable: each partition goes, in turn, to the member ranking it highest (rendezvous
    hashing) that still has room, so a member joining or leaving moves about the share
    it gains or loses, not the whole layout (as contiguous ranges would).
    """
    live = sorted(set(members))
    if not live:
        return {}
    quota, extra = divmod(partitions, len(live))
    load = dict.fromkeys(live, 0)
    owned: dict[str, set[int]] = {m: set() for m in live}
    full = 0  # members holding quota + 1: at most ``extra`` of them
    for partition in range(partitions):
        ranked = sorted(live, key=lambda m: _rank(m, partition), reverse=True)
        room = quota + 1 if full < extra else quota
        member = next(m for m in ranked if load[m] < room)
        load[member] += 1
        full += load[member] == quota + 1
        owned[member].add(partition)
    return {m: frozenset(p) for m, p in owned.items()}


def _rank(member: str, partition: int) -> int:
    # A stable hash (not hash(), which differs between processes).
    digest = hashlib.blake2b(f"{member}/{partition}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _by_member(members: Sequence[str], owners: Sequence[str]) -> dict[str, frozenset[int]]:
    owned: dict[str, set[int]] = {m: set() for m in members}
    for p, o in enumerate(owners):
        owned.setdefault(o, set()).add(p)
    return {m: frozenset(ps) for m, ps in owned.items()}
