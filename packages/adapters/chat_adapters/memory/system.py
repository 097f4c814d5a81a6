"""Deterministic clock, ids and password hasher: the system ports for fast unit tests.

Nothing here is fit for production: the clock only moves when told to, ids are a
counter, and the hasher is neither slow nor salted. The composition root never
builds these; tests do.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

from chat_domain.ports.security import PasswordHasher
from chat_domain.ports.system import Clock, IdGenerator

# Distinct from the production namespace, so a test id never passes for a real one.
_TEST_NAMESPACE = uuid.UUID("0b7e2f3c-5d7a-4c41-8e0f-9a6b1c2d3e4f")
EPOCH = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)


class FixedClock(Clock):
    """A clock that stands still until ``advance`` moves it forward."""

    def __init__(self, start: datetime = EPOCH) -> None:
        if start.tzinfo is None:
            raise ValueError("the clock keeps timezone-aware UTC only")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float = 1.0) -> datetime:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._now += timedelta(seconds=seconds)
        return self._now


class SequentialIds(IdGenerator):
    """Ids 1, 2, 3, ... spelled as UUIDs, so they look like the real thing in views."""

    def __init__(self) -> None:
        self._next = 0

    def new_id(self) -> str:
        self._next += 1
        return str(uuid.UUID(int=self._next))

    def stable_id(self, *parts: str) -> str:
        # The same rule as production (uuid5 over unit-separated parts), its own namespace.
        return str(uuid.uuid5(_TEST_NAMESPACE, "\x1f".join(parts)))


class InsecureTestHasher(PasswordHasher):
    """FOR TESTS ONLY: an unsalted, fast SHA-256. Argon2 costs ~50 ms a call; this ~1 µs."""

    PREFIX = "test-only-sha256$"
    # No password hashes to this: it is not a hex digest.
    DECOY = PREFIX + "decoy"

    @property
    def decoy_hash(self) -> str:
        return self.DECOY

    async def hash(self, password: str) -> str:
        return self.PREFIX + hashlib.sha256(password.encode()).hexdigest()

    async def verify(self, password_hash: str, password: str) -> bool:
        return password_hash == await self.hash(password)
