"""A worker group in one process: the embedded mode's single worker, and tests' members."""

from __future__ import annotations

import time
import uuid

from chat_domain.ports.worker_group import WorkerGroup


class InMemoryWorkerGroup(WorkerGroup):
    """Members' lease deadlines in a dict that members of one process share.

    Alone (the default), this member is the whole group and consumes every partition.
    ``another_member()`` is one more member of the same group, for tests.
    """

    def __init__(
        self,
        lease_seconds: float = 4.0,
        *,
        member_id: str | None = None,
        roster: dict[str, float] | None = None,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self._lease = lease_seconds
        self._id = member_id or f"worker-{uuid.uuid4().hex[:8]}"
        self._roster: dict[str, float] = {} if roster is None else roster

    def another_member(self, lease_seconds: float | None = None) -> InMemoryWorkerGroup:
        return InMemoryWorkerGroup(lease_seconds or self._lease, roster=self._roster)

    @property
    def member_id(self) -> str:
        return self._id

    @property
    def lease_seconds(self) -> float:
        return self._lease

    async def heartbeat(self) -> list[str]:
        now = time.monotonic()
        self._roster[self._id] = now + self._lease
        for member, deadline in list(self._roster.items()):
            if deadline <= now:
                del self._roster[member]
        return sorted(self._roster)

    async def leave(self) -> None:
        self._roster.pop(self._id, None)
