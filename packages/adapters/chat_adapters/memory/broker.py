"""The embedded broker: one process, no server, the same delivery rules as RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections import deque
from dataclasses import dataclass, field

from chat_domain.entities import Message
from chat_domain.errors import Unavailable
from chat_domain.ports.broker import MessageBroker, MessageHandler

log = logging.getLogger(__name__)


@dataclass
class _Partition:
    # A message stays at the head until its handler returned: that is the "ack".
    pending: deque[Message] = field(default_factory=deque)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    # Held by the consumer that drains this partition: one active consumer at a time.
    owner: asyncio.Lock = field(default_factory=asyncio.Lock)


class InMemoryBroker(MessageBroker):
    """Partitioned in-process queues, at-least-once to the handler, one room in order.

    Rooms map to ``partitions`` by crc32 of the room id; each partition is drained by
    one consumer at a time, serially. A failing message is retried first (so the
    room keeps its order) with a growing pause, and after ``max_attempts`` it moves
    to ``dead_letters`` and is logged. Nothing survives the process: this is the
    single-process default, not a durable store, so ``close`` first refuses new
    messages and lets the consumers drain what was accepted (within ``drain_timeout``).
    """

    def __init__(
        self,
        partitions: int = 8,
        max_attempts: int = 5,
        retry_backoff: float = 0.05,
        drain_timeout: float = 10.0,
    ) -> None:
        if partitions < 1 or max_attempts < 1:
            raise ValueError("partitions and max_attempts must be at least 1")
        self._partitions = [_Partition() for _ in range(partitions)]
        self._max_attempts = max_attempts
        self._retry_backoff = retry_backoff
        self._drain_timeout = drain_timeout
        self._accepting = True
        self._drained = asyncio.Event()
        self._closed = False
        self._stopping = asyncio.Event()
        self._consumers_done: list[asyncio.Event] = []
        self.dead_letters: list[Message] = []

    async def start(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        # Accepted messages live only in this process: store them before stopping.
        self._accepting = False
        if self._consumers_done and not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wait_drained(), self._drain_timeout)
            left = sum(len(p.pending) for p in self._partitions)
            if left:
                log.error("closing with %d accepted messages not stored", left)
        self._closed = True
        self._stopping.set()
        for partition in self._partitions:
            partition.arrived.set()
        for done in self._consumers_done:
            await done.wait()

    async def check(self) -> None:
        if self._closed or not self._accepting:
            raise Unavailable("message broker unavailable")

    async def _wait_drained(self) -> None:
        while any(p.pending for p in self._partitions):
            self._drained.clear()
            await self._drained.wait()

    async def publish(self, message: Message) -> None:
        await self.check()
        partition = self._partitions[zlib.crc32(message.room_id.encode()) % len(self._partitions)]
        partition.pending.append(message)
        partition.arrived.set()

    async def consume(self, handler: MessageHandler) -> None:
        """Run until ``close``; if this call is cancelled, messages in hand stay unacked."""
        if self._closed:
            return
        done = asyncio.Event()
        self._consumers_done.append(done)
        drains = [asyncio.create_task(self._drain(p, handler)) for p in self._partitions]
        try:
            await self._stopping.wait()
            # Graceful: each drain finishes the message in hand and stops.
            await asyncio.gather(*drains)
        finally:
            # Cancelled (a hard stop): handlers are interrupted, their messages stay
            # at the head of their partition for the next consumer.
            for drain in drains:
                drain.cancel()
            await asyncio.gather(*drains, return_exceptions=True)
            done.set()

    async def _drain(self, partition: _Partition, handler: MessageHandler) -> None:
        async with partition.owner:
            while not self._closed:
                if not partition.pending:
                    partition.arrived.clear()
                    await partition.arrived.wait()
                    continue
                if await self._deliver(partition.pending[0], handler):
                    partition.pending.popleft()
                    if not partition.pending:
                        self._drained.set()

    async def _deliver(self, message: Message, handler: MessageHandler) -> bool:
        """Try ``message`` until it succeeds or is dead-lettered; False if closed meanwhile."""
        for attempt in range(1, self._max_attempts + 1):
            try:
                await handler(message)
                return True
            except Exception:
                log.warning("message %s failed (attempt %d)", message.id, attempt, exc_info=True)
            if attempt < self._max_attempts:
                delay = min(self._retry_backoff * 2 ** (attempt - 1), 1.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                if self._closed:
                    return False  # left unacked at the head
        log.error("message %s dead-lettered after %d attempts", message.id, self._max_attempts)
        self.dead_letters.append(message)
        return True
