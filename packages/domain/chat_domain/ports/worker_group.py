"""The worker group port: which workers are alive, and so which partitions each consumes.

Accepted messages wait in ``P`` partitions (a room always in the same one). Workers
that share them form a group: each renews a lease in the group, and every member
computes the same assignment (``assign_partitions``) from the same sorted list of live
members, so they agree without talking to each other. The broker fences each partition
to one consumer at a time on its own; the group only decides who should try.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence


class WorkerGroup(ABC):
    """Membership of the workers that share the broker's partitions.

    * ``heartbeat`` joins the group or renews this member's lease, and returns the live
      members (this one included), sorted. A member whose lease was not renewed for
      ``lease_seconds`` is no longer listed (it crashed, or cannot reach the group).
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

    @abstractmethod
    async def heartbeat(self) -> list[str]:
        """Join or stay in the group; the ids of the live members, sorted."""

    @abstractmethod
    async def leave(self) -> None:
        """Leave the group now (a graceful stop)."""

    async def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections (process shutdown); call ``leave`` first."""


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
