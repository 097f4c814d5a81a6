"""The worker group port: which workers are alive, and so which partitions each consumes.

Accepted messages wait in ``P`` partitions (a room always in the same one). Workers
that share them form a group: each renews a lease in the group and reports how many
messages it handled per partition; the lowest member id writes the group's partition
plan, balanced by those counts, and every member follows the stored plan, so they agree
(``chat_domain.partition_plan``). The broker fences each partition to one consumer at a
time on its own; the group only decides who should try.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping

from chat_domain.errors import Unavailable
from chat_domain.partition_plan import (
    BalancePolicy,
    GroupView,
    PartitionPlan,
    assign_partitions,
    follow,
    next_plan,
    spread,
    weights,
)

__all__ = ["BalancePolicy", "GroupView", "PartitionPlan", "WorkerGroup", "assign_partitions"]

log = logging.getLogger("chat.worker")


class WorkerGroup(ABC):
    """Membership of the workers that share the broker's partitions.

    * ``heartbeat`` joins the group or renews this member's lease, and returns the live
      members (this one included), sorted. A member whose lease was not renewed for
      ``lease_seconds`` is no longer listed (it crashed, or cannot reach the group).
    * ``beat`` does the same, adds this member's count of messages handled per partition
      to the group's counters, and reads them with the stored plan (a ``GroupView``).
    * ``propose`` stores a plan only if the stored one is the epoch before it (or none is
      stored and it is epoch 1): of two members writing at once, one wins.
    * ``share`` is what a consumer calls at each heartbeat: ``beat``, the leader's next
      plan if one is due, and this member's partitions under the group's plan.
    * ``leave`` takes this member out at once, so that the others take its partitions
      at their next heartbeat rather than after its lease.
    * Raises ``Unavailable`` when the group cannot be reached; the caller then decides
      what to consume without it.
    """

    @property
    @abstractmethod
    def member_id(self) -> str:
        """This member's id, unique in the group (it names the worker in logs)."""

    @property
    @abstractmethod
    def lease_seconds(self) -> float:
        """How long a member stays listed without a heartbeat."""

    @property
    def heartbeat_seconds(self) -> float:
        """How often a member should call ``heartbeat``: several times per lease, so
        that one slow round trip does not drop it from the group."""
        return self.lease_seconds / 4

    @property
    def policy(self) -> BalancePolicy:
        """How the group balances the partitions (the same for every member)."""
        return BalancePolicy()

    async def heartbeat(self) -> list[str]:
        """Join or stay in the group; the ids of the live members, sorted."""
        return (await self.beat({})).members

    @abstractmethod
    async def beat(self, handled: Mapping[int, int]) -> GroupView:
        """Join or stay in the group, add ``handled`` (messages per partition since the
        last beat) to the group's counters; the live members, counters and stored plan."""

    @abstractmethod
    async def propose(self, plan: PartitionPlan) -> bool:
        """Store ``plan`` if the stored plan's epoch is ``plan.epoch - 1`` (none stored:
        epoch 0); whether it was stored."""

    async def share(self, partitions: int, handled: Mapping[int, int]) -> frozenset[int]:
        """Renew this member's lease, report ``handled``, and return the partitions it
        should consume. The leader (the lowest live id) first writes the next plan when
        one is due; the others follow the stored plan, adjusted to the live members the
        same way by everyone until the leader's next plan is stored."""
        view = await self.beat(handled)
        plan = view.plan
        if self.policy.by_load and view.members and view.members[0] == self.member_id:
            proposed = next_plan(view, partitions, self.policy)
            try:
                if proposed is not None and await self.propose(proposed):
                    _log_plan(plan, proposed)
                    plan = proposed
            except Unavailable as exc:  # the beat was heard: follow the stored plan
                log.warning("could not store the next partition plan: %s", exc)
        return follow(plan, partitions, view.members, self.policy).get(self.member_id, frozenset())

    @abstractmethod
    async def leave(self) -> None:
        """Leave the group now (a graceful stop)."""

    async def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections (process shutdown); call ``leave`` first."""


def _log_plan(before: PartitionPlan | None, after: PartitionPlan) -> None:
    moved = (
        len(after.owners)
        if before is None or len(before.owners) != len(after.owners)
        else sum(a != b for a, b in zip(after.owners, before.owners, strict=True))
    )
    if not moved and before is not None and before.members == after.members:
        return  # only a new reading of the loads
    weight = weights(after.loads, len(after.owners))
    loads = dict.fromkeys(after.members, 0.0)
    for partition, owner in enumerate(after.owners):
        loads[owner] = loads.get(owner, 0.0) + weight[partition]
    log.info(
        "partition plan %d: %d partitions moved, %d members, load spread %.0f%%%s",
        after.epoch,
        moved,
        len(after.members),
        spread(loads) * 100,
        "" if after.loads is not None else " (no load measured yet: by count)",
        extra={"plan_epoch": after.epoch, "partitions_moved": moved},
    )
