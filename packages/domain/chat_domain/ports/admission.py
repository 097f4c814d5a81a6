"""Admission: a bounded lane for costly work of one kind, so a burst of it cannot starve
the rest of the service.

Registering hashes a password with argon2, slow on purpose (~20 ms of a core). Hundreds
of registrations at once used to fill every hashing thread, and a real user's login
waited seconds behind them. Registrations now enter their own lane: a few at a time,
a bounded queue behind them, and beyond that an immediate refusal.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager


class Admission(ABC):
    """At most ``concurrency`` callers inside at once, at most ``queue`` more waiting their
    turn (first come, first served); any further caller is refused at once."""

    @abstractmethod
    def admit(self) -> AbstractAsyncContextManager[None]:
        """Enter the lane for the ``async with`` block, after waiting for a turn; raise
        ``RateLimited`` (with a ``retry_after``) at once if the queue is full."""
