"""Whether a run (or one step of it) met its limits, and the highest load that did.

Pure stdlib. The limits are read from CHAT_LOCUST_* variables (or Locust's custom
arguments of the same names, see ``locustfile.py``):

- CHAT_LOCUST_LOSS_BUDGET: deliveries allowed to go wrong (missing, duplicated or out of
  order), default 0;
- CHAT_LOCUST_P95_MS / CHAT_LOCUST_P99_MS: limits on the delivery latency (post to
  ``message:new``), defaults 1000 and 2000 ms; 0 turns a limit off;
- CHAT_LOCUST_MAX_ERROR_RATE: failed HTTP calls / HTTP calls, default 0.01.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loadtests.delivery_tally import Route, Tally, percentile


@dataclass(frozen=True)
class Limits:
    loss_budget: int = 0  # deliveries missing, duplicated or out of order
    p95_ms: float = 1000.0  # 0: no limit
    p99_ms: float = 2000.0  # 0: no limit
    max_error_rate: float = 0.01  # failed / all HTTP calls

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        env = os.environ if env is None else env
        d = cls()
        return cls(
            loss_budget=int(env.get("CHAT_LOCUST_LOSS_BUDGET", d.loss_budget)),
            p95_ms=float(env.get("CHAT_LOCUST_P95_MS", d.p95_ms)),
            p99_ms=float(env.get("CHAT_LOCUST_P99_MS", d.p99_ms)),
            max_error_rate=float(env.get("CHAT_LOCUST_MAX_ERROR_RATE", d.max_error_rate)),
        )

    @classmethod
    def from_options(cls, options: object | None) -> Limits:
        """From Locust's parsed options (``--chat-*``, which also read the variables)."""
        if options is None or not hasattr(options, "chat_loss_budget"):
            return cls.from_env()
        o: Any = options
        return cls(o.chat_loss_budget, o.chat_p95_ms, o.chat_p99_ms, o.chat_max_error_rate)


def faulty(route: Route) -> int:
    """Deliveries that went wrong on a route: missing, duplicated, out of order."""
    c = route.counts
    return c["missing"] + c["duplicated"] + c["out_of_order"]


def breaches(route: Route, calls: int, failures: int, limits: Limits) -> list[str]:
    """Each limit the deliveries of ``route`` and ``failures`` of ``calls`` HTTP calls
    broke, in words; empty when all were met."""
    found = []
    if faulty(route) > limits.loss_budget:
        c = route.counts
        found.append(
            f"{faulty(route)} faulty deliveries (missing {c['missing']}, duplicated "
            f"{c['duplicated']}, out of order {c['out_of_order']}) > budget {limits.loss_budget}"
        )
    for name, q, limit in (("p95", 0.95, limits.p95_ms), ("p99", 0.99, limits.p99_ms)):
        value = percentile(route.latency, q)
        if limit > 0 and value is not None and value > limit:
            found.append(f"delivery {name} {value:g} ms > {limit:g} ms")
    if calls and failures / calls > limits.max_error_rate:
        found.append(
            f"HTTP error rate {failures / calls:.2%} ({failures}/{calls}) "
            f"> {limits.max_error_rate:.2%}"
        )
    return found


@dataclass
class Window:
    """A stretch of a run at one load: a step of a shape, or a sample of a steady run."""

    label: str
    users: int
    seconds: float
    tally: Tally  # what was counted during the window only
    http_calls: int = 0
    http_failures: int = 0

    def delivered_per_s(self, route: Route | None = None) -> float:
        route = self.tally.total() if route is None else route
        return route.counts["delivered"] / self.seconds if self.seconds > 0 else 0.0

    def cluster_breaches(self, limits: Limits) -> list[str]:
        return breaches(self.tally.total(), self.http_calls, self.http_failures, limits)

    def node_breaches(self, node: str, limits: Limits) -> list[str]:
        """The limits broken by the deliveries at ``node``'s sockets and the message POSTs
        to ``node``."""
        route = self.tally.by_deliver_node().get(node, Route())
        posts = self.tally.posts.get(node)
        calls, failures = (posts.sent, posts.errors) if posts else (0, 0)
        return breaches(route, calls, failures, limits)


@dataclass
class Knee:
    """The highest load that met the limits, for the cluster and for each node, and the
    first window that broke them (None: none broke)."""

    cluster: Window | None
    nodes: dict[str, Window | None] = field(default_factory=dict)
    broken_at: Window | None = None


def knee(windows: list[Window], limits: Limits) -> Knee:
    """Walk the windows in order (rising load): the last one before the first breach."""
    result = Knee(cluster=None)
    for window in windows:
        if window.cluster_breaches(limits):
            result.broken_at = window
            break
        result.cluster = window
    node_names = sorted({n for w in windows for n in w.tally.by_deliver_node()})
    for node in node_names:
        best = None
        for window in windows:
            if window.node_breaches(node, limits):
                break
            best = window
        result.nodes[node] = best
    return result
