"""The scaling mode's workloads: rooms shaped like real use rather than equal rooms, users
placed on random nodes, and a seeded sequence of who posts where.

``mixed``: many direct rooms (two members), small groups, a few big rooms; each message
picks a kind of room by its share of the traffic, then a room and a sender of it at random.
``direct-cross``: direct rooms only, the two members of each on two different nodes (when
there are two nodes or more), so that every message has a recipient on another node.
Everything random comes from ``random.Random(seed)``: two runs offer the same load.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

MIXED = "mixed"
DIRECT_CROSS = "direct-cross"
WORKLOADS = (MIXED, DIRECT_CROSS)


@dataclass(frozen=True)
class RoomPlan:
    """A room to create: its kind (``direct`` or ``group``) and its members (user indices)."""

    kind: str
    members: tuple[int, ...]
    traffic: str  # the share of traffic it belongs to: "direct", "group" or "big"


@dataclass(frozen=True)
class Workload:
    """How many users and rooms of each kind, and each kind's share of the messages."""

    users: int = 200
    direct_rooms: int = 60
    groups: int = 30
    group_size: tuple[int, int] = (3, 8)
    big_rooms: tuple[int, ...] = (40, 80)
    # Shares of the messages (they need not add up to 1: they are weights).
    direct_share: float = 0.5
    group_share: float = 0.35
    big_share: float = 0.15
    cross_pairs: int = 40  # direct-cross: pairs of users of their own, one room each
    seed: int = 22

    def describe(self) -> str:
        sizes = "/".join(str(n) for n in self.big_rooms)
        low, high = self.group_size
        return (
            f"mixed: {self.users} users, {self.direct_rooms} direct rooms, {self.groups} groups "
            f"of {low}-{high}, big rooms of {sizes}; message shares direct {self.direct_share}, "
            f"groups {self.group_share}, big {self.big_share}; direct-cross: {self.cross_pairs} "
            f"pairs on two different nodes; seed {self.seed}"
        )

    def mixed_rooms(self) -> list[RoomPlan]:
        """The mixed workload's rooms over users ``0..users-1`` (distinct direct pairs)."""
        rng = random.Random(self.seed)
        rooms: list[RoomPlan] = []
        pairs: set[tuple[int, int]] = set()
        while len(pairs) < min(self.direct_rooms, self.users * (self.users - 1) // 2):
            a, b = rng.sample(range(self.users), 2)
            pairs.add((min(a, b), max(a, b)))
        rooms += [RoomPlan("direct", pair, "direct") for pair in sorted(pairs)]
        low, high = self.group_size
        for _ in range(self.groups):
            size = min(rng.randint(low, high), self.users)
            rooms.append(RoomPlan("group", tuple(rng.sample(range(self.users), size)), "group"))
        for size in self.big_rooms:
            members = tuple(rng.sample(range(self.users), min(size, self.users)))
            rooms.append(RoomPlan("group", members, "big"))
        return rooms

    def cross_rooms(self) -> list[RoomPlan]:
        """The direct-cross rooms, over users ``users..users+2*cross_pairs-1``: one room per
        pair, each user in exactly one, so that each pair can be split over two nodes."""
        first = self.users
        return [
            RoomPlan("direct", (first + 2 * i, first + 2 * i + 1), "direct")
            for i in range(self.cross_pairs)
        ]

    @property
    def total_users(self) -> int:
        return self.users + 2 * self.cross_pairs

    def shares(self) -> dict[str, float]:
        return {"direct": self.direct_share, "group": self.group_share, "big": self.big_share}


def placement(users: int, nodes: int, seed: int) -> list[int]:
    """A node for each user of the mixed workload, uniformly at random."""
    rng = random.Random(f"{seed}-place-{nodes}")
    return [rng.randrange(nodes) for _ in range(users)]


def cross_placement(rooms: Sequence[RoomPlan], nodes: int, seed: int) -> dict[int, int]:
    """A node for each user of the direct-cross rooms: the two of a room on two different
    nodes when there are two or more."""
    rng = random.Random(f"{seed}-cross-{nodes}")
    placed: dict[int, int] = {}
    for room in rooms:
        a, b = room.members
        placed[a] = rng.randrange(nodes)
        placed[b] = (placed[a] + 1 + rng.randrange(nodes - 1)) % nodes if nodes > 1 else placed[a]
    return placed


def message_plan(
    rooms: Sequence[RoomPlan], shares: dict[str, float], seed: int
) -> Iterator[tuple[int, int]]:
    """Endless (room index, sender user index): a kind of room by its share, then one of
    its rooms and one of its members uniformly."""
    rng = random.Random(f"{seed}-messages")
    by_traffic: dict[str, list[int]] = {}
    for i, room in enumerate(rooms):
        by_traffic.setdefault(room.traffic, []).append(i)
    kinds = [k for k in by_traffic if shares.get(k, 0) > 0]
    weights = [shares[k] for k in kinds]
    while True:
        kind = rng.choices(kinds, weights)[0]
        index = rng.choice(by_traffic[kind])
        yield index, rng.choice(rooms[index].members)
