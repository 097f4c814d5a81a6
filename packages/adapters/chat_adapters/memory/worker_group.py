"""A worker group in one process: the embedded mode's single worker, and tests' members."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from chat_domain.ports.worker_group import BalancePolicy, GroupView, PartitionPlan, WorkerGroup


@dataclass
class _Store:
    """What the members of one group share: lease deadlines, counters, the plan."""

    roster: dict[str, float] = field(default_factory=dict)
    counted: dict[int, int] = field(default_factory=dict)
    plan: PartitionPlan | None = None


class InMemoryWorkerGroup(WorkerGroup):
    """Members' lease deadlines, the group's counters and plan in an object that members
    of one process share.

    Alone (the default), this member is the whole group and consumes every partition.
    ``another_member()`` is one more member of the same group, for tests.
    """

    def __init__(
        self,
        lease_seconds: float = 4.0,
        *,
        member_id: str | None = None,
        policy: BalancePolicy | None = None,
        _store: _Store | None = None,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self._lease = lease_seconds
        self._id = member_id or f"worker-{uuid.uuid4().hex[:8]}"
        self._policy = policy or BalancePolicy()
        self._store = _Store() if _store is None else _store

    def another_member(
        self,
        lease_seconds: float | None = None,
        *,
        member_id: str | None = None,
        policy: BalancePolicy | None = None,
    ) -> InMemoryWorkerGroup:
        """One more member of this group (this member's policy unless given another)."""
        return InMemoryWorkerGroup(
            lease_seconds or self._lease,
            member_id=member_id,
            policy=policy or self._policy,
            _store=self._store,
        )

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
        now = time.monotonic()
        store = self._store
        store.roster[self._id] = now + self._lease
        for member, deadline in list(store.roster.items()):
            if deadline <= now:
                del store.roster[member]
        for partition, count in handled.items():
            store.counted[partition] = store.counted.get(partition, 0) + count
        epoch = 0 if store.plan is None else store.plan.epoch
        return GroupView(sorted(store.roster), dict(store.counted), store.plan, now, epoch)

    async def propose(self, plan: PartitionPlan) -> bool:
        stored = self._store.plan
        if (0 if stored is None else stored.epoch) != plan.epoch - 1:
            return False
        self._store.plan = plan
        return True

    async def leave(self) -> None:
        self._store.roster.pop(self._id, None)
