"""After a run: every delivery that did not arrive in time, checked against the rooms'
stored history, is either *late* (the message is stored: the fan-out failed or was slow)
or *lost* (the POST was answered 202, yet the message is not stored).

Pure stdlib; the history is read by the caller (``locust_support.read_history``) and passed
in as the set of client_msg_ids stored per room, or None for a room whose history could
not be read (its deliveries are then *unchecked*, never guessed).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

CLASSES = ("late", "lost", "unchecked")


@dataclass(frozen=True)
class Missing:
    """A delivery not received within the loss timeout: message, member, room, route."""

    cmid: str
    member: int
    room_id: str
    post_node: str
    deliver_node: str


@dataclass
class Reconciliation:
    """Missing deliveries by class (late / lost / unchecked) and by delivering node; of
    the late ones, how many arrived after the timeout after all."""

    by_node: dict[str, Counter[str]] = field(default_factory=dict)
    arrived_after_timeout: int = 0

    def add(self, node: str, klass: str, n: int = 1) -> None:
        self.by_node.setdefault(node, Counter())[klass] += n

    def total(self) -> Counter[str]:
        every: Counter[str] = Counter()
        for counts in self.by_node.values():
            every.update(counts)
        return every

    def merge(self, other: Reconciliation) -> None:
        for node, counts in other.by_node.items():
            self.by_node.setdefault(node, Counter()).update(counts)
        self.arrived_after_timeout += other.arrived_after_timeout

    def to_dict(self) -> dict[str, Any]:
        return {
            "by_node": {n: dict(c) for n, c in self.by_node.items()},
            "arrived_after_timeout": self.arrived_after_timeout,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reconciliation:
        return cls(
            {n: Counter(c) for n, c in data.get("by_node", {}).items()},
            int(data.get("arrived_after_timeout", 0)),
        )


def classify(
    missing: Iterable[Missing],
    arrived_late: set[tuple[str, int]],
    stored: Mapping[str, set[str] | None],
) -> Reconciliation:
    """Class every missing delivery: late if it arrived after the timeout or its message is
    in the room's history, lost if the history was read and lacks it, else unchecked."""
    result = Reconciliation()
    for m in missing:
        if (m.cmid, m.member) in arrived_late:
            result.add(m.deliver_node, "late")
            result.arrived_after_timeout += 1
            continue
        history = stored.get(m.room_id)
        if history is None:
            result.add(m.deliver_node, "unchecked")
        elif m.cmid in history:
            result.add(m.deliver_node, "late")
        else:
            result.add(m.deliver_node, "lost")
    return result


def table(reconciliation: Reconciliation) -> str:
    """The late/lost table, one line per delivering node and a total."""
    lines = [f"{'delivering node':<32} {'late':>8} {'lost':>8} {'unchecked':>10}"]
    for node in sorted(reconciliation.by_node):
        c = reconciliation.by_node[node]
        lines.append(f"{node:<32} {c['late']:>8} {c['lost']:>8} {c['unchecked']:>10}")
    t = reconciliation.total()
    lines.append(f"{'total':<32} {t['late']:>8} {t['lost']:>8} {t['unchecked']:>10}")
    lines.append(
        f"(late: stored but not delivered within the loss timeout, "
        f"{reconciliation.arrived_after_timeout} of them arrived afterwards; "
        "lost: answered 202 but absent from the room's history)"
    )
    return "\n".join(lines)
