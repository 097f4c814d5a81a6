"""The realtime notifier port: events pushed to users' connected sockets, on any node."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Payload = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Notification:
    """One event for every socket of some users."""

    user_ids: tuple[str, ...]
    event: str
    payload: Payload


class RealtimeNotifier(ABC):
    """Pushes an event to every connected socket of some users, whichever node holds them.

    Events are addressed to users, not to rooms: the caller passes the room's
    current members, so a member added or removed is reached (or not) from the
    very next event on, on every node, with no socket-room bookkeeping to drift.
    Delivery is best effort: a client that was cut off catches up by ``seq``.
    """

    @abstractmethod
    async def emit_to_users(self, user_ids: Iterable[str], event: str, payload: Payload) -> None:
        """Send ``event`` with ``payload`` to every socket of every user in ``user_ids``."""

    async def emit_many(self, notifications: Sequence[Notification]) -> None:
        """Send several events, in order. An adapter that crosses nodes sends them as one
        hand-off (a worker storing a batch of messages emits them this way)."""
        for n in notifications:
            await self.emit_to_users(n.user_ids, n.event, n.payload)

    async def check(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Raise ``Unavailable`` if fan-out is broken (readiness probe)."""
