"""The presence port: which users have at least one socket connected, on any node."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable


class PresenceTracker(ABC):
    """Counts each user's connected sockets across nodes and reports the edges.

    A user is online while any of their sockets is connected. ``socket_connected`` and
    ``socket_disconnected`` tell the caller whether this very call crossed the edge (first
    socket in, last socket out), atomically, so that with several sockets per user and
    several nodes exactly one caller announces each change.
    """

    @abstractmethod
    async def socket_connected(self, user_id: str, socket_id: str) -> bool:
        """Record a socket of ``user_id``; True if the user was offline until now."""

    @abstractmethod
    async def socket_disconnected(self, user_id: str, socket_id: str) -> bool:
        """Forget a socket of ``user_id``; True if it was the user's last one."""

    @abstractmethod
    async def online(self, user_ids: Iterable[str]) -> set[str]:
        """Those of ``user_ids`` that have at least one socket connected."""

    async def check(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Raise ``Unavailable`` if presence cannot be tracked (readiness probe)."""

    async def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections and this node's registrations (process shutdown)."""
