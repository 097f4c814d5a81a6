"""The realtime notifier port: events pushed to users' connected sockets, on any node."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

Payload = Mapping[str, Any]


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

    async def check(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Raise ``Unavailable`` if fan-out is broken (readiness probe)."""
