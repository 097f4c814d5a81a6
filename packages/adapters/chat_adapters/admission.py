"""Admission per process: an asyncio semaphore with a bounded number of waiters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from chat_domain.errors import RateLimited
from chat_domain.ports.admission import Admission


class LocalAdmission(Admission):
    """A lane of this process: each node admits ``concurrency`` at once and queues
    ``queue`` more; ``name`` says what is refused in the error message."""

    def __init__(self, name: str, concurrency: int, queue: int, retry_after: float = 1.0) -> None:
        if concurrency < 1 or queue < 0:
            raise ValueError("admission needs concurrency >= 1 and queue >= 0")
        self._name, self._retry_after = name, retry_after
        self._capacity = concurrency + queue
        self._turns = asyncio.Semaphore(concurrency)  # FIFO: waiters are woken in order
        self._inside = 0  # running or waiting

    @property
    def inside(self) -> int:
        """Callers running or waiting now."""
        return self._inside

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        if self._inside >= self._capacity:
            raise RateLimited(self._retry_after, f"too many {self._name} at once: retry later")
        self._inside += 1
        try:
            async with self._turns:
                yield
        finally:
            self._inside -= 1
