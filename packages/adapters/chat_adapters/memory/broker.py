"""The embedded broker: one process, no server, the same delivery rules as RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import zlib
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

from chat_adapters.delivery import Outcome, deliver_in_order
from chat_domain.entities import Message
from chat_domain.errors import Unavailable
from chat_domain.ports.broker import DeadLetter, MessageBatchHandler, MessageBroker

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
    one consumer at a time, serially, in batches of what is waiting (at most
    ``batch_size``). A failing message is retried first (so the room keeps its order)
    with a growing pause, and after ``max_attempts`` it moves to the dead letters and
    is logged (they live in this process: only it can list and replay them). Nothing
    survives the process: this is the
    single-process default, not a durable store, so ``close`` first refuses new
    messages and lets the consumers drain what was accepted (within ``drain_timeout``).
    """

    def __init__(
        self,
        partitions: int = 8,
        max_attempts: int = 5,
        retry_backoff: float = 0.05,
        drain_timeout: float = 10.0,
        batch_size: int = 64,
    ) -> None:
        if partitions < 1 or max_attempts < 1 or batch_size < 1:
            raise ValueError("partitions, max_attempts and batch_size must be at least 1")
        self._batch_size = batch_size
        self._partitions = [_Partition() for _ in range(partitions)]
        self._max_attempts = max_attempts
        self._retry_backoff = retry_backoff
        self._drain_timeout = drain_timeout
        self._accepting = True
        self._drained = asyncio.Event()
        self._closed = False
        self._stopping = asyncio.Event()
        self._consumers_done: list[asyncio.Event] = []
        self._dead: list[DeadLetter] = []

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

    async def consume(self, handler: MessageBatchHandler) -> None:
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

    async def _drain(self, partition: _Partition, handler: MessageBatchHandler) -> None:
        async with partition.owner:
            while not self._closed:
                if not partition.pending:
                    partition.arrived.clear()
                    await partition.arrived.wait()
                    continue
                batch = list(itertools.islice(partition.pending, self._batch_size))
                outcomes = await deliver_in_order(
                    batch,
                    handler,
                    earlier_attempts=[0] * len(batch),
                    max_attempts=self._max_attempts,
                    retry_backoff=self._retry_backoff,
                    stopping=self._stopping,
                    partition=self._partitions.index(partition),
                )
                for outcome in outcomes:
                    if outcome is Outcome.STOPPED:
                        break  # left at the head, unacknowledged
                    message = partition.pending.popleft()
                    if outcome is Outcome.DEAD:
                        self._dead.append(self._set_aside(message))
                if not partition.pending:
                    self._drained.set()

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        return self._dead[:limit]

    async def replay_dead_letters(self, message_ids: Collection[str] | None) -> list[str]:
        chosen = [
            (dead, dead.message)
            for dead in self._dead
            if dead.message is not None and (message_ids is None or dead.message_id in message_ids)
        ]
        chosen.sort(key=lambda pair: pair[1].created_at)  # acceptance order, as RabbitMQ's
        replayed: list[str] = []
        for dead, message in chosen:
            await self.publish(message)  # Unavailable once closing: the rest stay
            self._dead.remove(dead)
            replayed.append(dead.message_id)
        return replayed

    def _set_aside(self, message: Message) -> DeadLetter:
        return DeadLetter(
            message_id=message.id,
            message=message,
            reason=f"failed {self._max_attempts} attempts",
            dead_lettered_at=datetime.now(UTC),
            attempts=self._max_attempts,
        )
