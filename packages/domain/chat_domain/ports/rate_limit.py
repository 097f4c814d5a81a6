"""Rate limits: token buckets keyed by who is acting ("send:<user_id>", "login:addr:<ip>").

The port lives in the domain because "a user sends at most so many messages" is a
rule of the chat, enforced inside the send path so that REST and socket.io share
one budget; where the key is only known at the edge (a client's address), the
server applies the same port there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from chat_domain.errors import RateLimited


@dataclass(frozen=True, slots=True)
class RateRule:
    """A token bucket: ``burst`` tokens at most, refilled at ``per_second``; one per call.

    A rule with ``per_second <= 0`` or ``burst <= 0`` is off: every call passes.
    """

    name: str
    per_second: float
    burst: int

    @classmethod
    def per_minute(cls, name: str, per_minute: float, burst: int) -> RateRule:
        return cls(name, per_minute / 60.0, burst)

    @property
    def enabled(self) -> bool:
        return self.per_second > 0 and self.burst > 0


class RateLimiter(ABC):
    """Takes one token from the bucket of ``(rule, key)``, or refuses with ``RateLimited``."""

    async def acquire(self, key: str, rule: RateRule) -> None:
        if not rule.enabled:
            return
        retry_after = await self._take(f"{rule.name}:{key}", rule)
        if retry_after > 0:
            raise RateLimited(retry_after, f"too many requests ({rule.name}): retry later")

    async def reset(self, key: str, rule: RateRule) -> None:
        """Fill the bucket of ``(rule, key)`` again: a login that succeeded clears the
        failures counted against it."""
        if rule.enabled:
            await self._forget(f"{rule.name}:{key}")

    @abstractmethod
    async def _take(self, bucket: str, rule: RateRule) -> float:
        """Take a token from ``bucket``: 0 if there was one, else seconds until there is."""

    @abstractmethod
    async def _forget(self, bucket: str) -> None:
        """Drop ``bucket``: its next call finds it full."""

    async def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections (process shutdown)."""
