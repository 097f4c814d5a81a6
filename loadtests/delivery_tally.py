"""What a Locust run counted about its messages, in a shape that adds up across processes.

Pure stdlib (no gevent, no Locust): each Locust process keeps one ``Tally``; a worker ships
``to_dict()`` to the master with its stats, and the master ``merge``s them, so the master's
totals are the sum of every process's, exactly. Latencies are kept as histograms of rounded
milliseconds (as Locust does), which merge by adding counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# The counted outcomes of one (post node, delivering node) route.
OUTCOMES = ("delivered", "missing", "arrived_late", "duplicated", "out_of_order")


def bucket(ms: float) -> int:
    """Round a latency as Locust does: 1 ms under 100, 10 ms under 1 s, 100 ms above."""
    if ms < 100:
        return round(ms)
    if ms < 1000:
        return int(round(ms, -1))
    return int(round(ms, -2))


def percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """The ``q`` (0..1) percentile of a bucketed histogram; None when it is empty."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, round(q * total + 0.4999))  # ceil(q * total): the nearest-rank method
    seen = 0
    for ms in sorted(histogram):
        seen += histogram[ms]
        if seen >= rank:
            return float(ms)
    return float(max(histogram))


@dataclass
class Route:
    """Deliveries of the messages posted to one node at the sockets of one node."""

    counts: Counter[str] = field(default_factory=Counter)
    latency: Counter[int] = field(default_factory=Counter)  # bucketed ms -> deliveries

    def add(self, other: Route) -> None:
        self.counts.update(other.counts)
        self.latency.update(other.latency)

    def minus(self, earlier: Route) -> Route:
        """What happened on this route since ``earlier`` (a snapshot of the same route)."""
        counts = Counter({k: v - earlier.counts[k] for k, v in self.counts.items()})
        latency = Counter({k: v - earlier.latency[k] for k, v in self.latency.items()})
        return Route(+counts, +latency)


@dataclass
class Posts:
    """The POSTs of messages to one node."""

    sent: int = 0
    accepted: int = 0
    errors: int = 0

    def add(self, other: Posts) -> None:
        self.sent += other.sent
        self.accepted += other.accepted
        self.errors += other.errors


def _route_key(post_node: str, deliver_node: str) -> str:
    return f"{post_node} > {deliver_node}"


@dataclass
class Tally:
    """Every route's deliveries and every node's posts, for one process or merged."""

    routes: dict[str, Route] = field(default_factory=dict)
    posts: dict[str, Posts] = field(default_factory=dict)

    def route(self, post_node: str, deliver_node: str) -> Route:
        return self.routes.setdefault(_route_key(post_node, deliver_node), Route())

    def node_posts(self, node: str) -> Posts:
        return self.posts.setdefault(node, Posts())

    def delivered(self, post_node: str, deliver_node: str, latency_ms: float) -> None:
        route = self.route(post_node, deliver_node)
        route.counts["delivered"] += 1
        route.latency[bucket(latency_ms)] += 1

    def count(self, outcome: str, post_node: str, deliver_node: str, n: int = 1) -> None:
        self.route(post_node, deliver_node).counts[outcome] += n

    # -- adding up ---------------------------------------------------------------------
    def merge(self, other: Tally) -> None:
        for key, route in other.routes.items():
            self.routes.setdefault(key, Route()).add(route)
        for node, posts in other.posts.items():
            self.posts.setdefault(node, Posts()).add(posts)

    @classmethod
    def merged(cls, tallies: Iterable[Tally]) -> Tally:
        total = cls()
        for tally in tallies:
            total.merge(tally)
        return total

    def minus(self, earlier: Tally) -> Tally:
        """What was counted since the snapshot ``earlier``."""
        routes = {k: r.minus(earlier.routes.get(k, Route())) for k, r in self.routes.items()}
        posts = {}
        for node, p in self.posts.items():
            e = earlier.posts.get(node, Posts())
            posts[node] = Posts(p.sent - e.sent, p.accepted - e.accepted, p.errors - e.errors)
        return Tally(routes, posts)

    def copy(self) -> Tally:
        return Tally.from_dict(self.to_dict())

    # -- views -------------------------------------------------------------------------
    def total(self) -> Route:
        every = Route()
        for route in self.routes.values():
            every.add(route)
        return every

    def by_deliver_node(self) -> dict[str, Route]:
        nodes: dict[str, Route] = {}
        for key, route in self.routes.items():
            nodes.setdefault(key.split(" > ", 1)[1], Route()).add(route)
        return nodes

    def by_post_node(self) -> dict[str, Route]:
        nodes: dict[str, Route] = {}
        for key, route in self.routes.items():
            nodes.setdefault(key.split(" > ", 1)[0], Route()).add(route)
        return nodes

    def nodes(self) -> list[str]:
        names = set(self.posts)
        for key in self.routes:
            names.update(key.split(" > ", 1))
        return sorted(names)

    # -- the wire (msgpack between Locust processes: string keys, plain values) ---------
    def to_dict(self) -> dict[str, Any]:
        return {
            "routes": {
                k: {
                    "counts": dict(r.counts),
                    "latency": {str(ms): n for ms, n in r.latency.items()},
                }
                for k, r in self.routes.items()
            },
            "posts": {n: [p.sent, p.accepted, p.errors] for n, p in self.posts.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tally:
        routes = {
            k: Route(Counter(r["counts"]), Counter({int(ms): n for ms, n in r["latency"].items()}))
            for k, r in data.get("routes", {}).items()
        }
        posts = {n: Posts(*v) for n, v in data.get("posts", {}).items()}
        return cls(routes, posts)
