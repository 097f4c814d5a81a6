"""The consumer loop: broker -> StoreMessages (store with the next seq, emit message:new).

Both processes that consume run it: `chat worker`, and `chat serve` in embedded mode. It
knows only ports and a use case, so it lives beside the use cases; what it consumed is
counted by the broker's metered wrapper (adapters), not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from chat_domain.entities import Message
from chat_domain.ports.broker import MessageBroker
from chat_domain.usecases.messages import StoreMessages

log = logging.getLogger("chat.worker")

# Messages in one transaction at most (whole broker batches are never split).
TRANSACTION_MAX = 256

_Waiting = tuple[Sequence[Message], "asyncio.Future[None]"]


class MessageConsumer:
    """Stores what the broker delivers, acknowledging messages only once they are stored.

    The broker hands over batches concurrently (one per partition). Each handler call
    queues its batch and waits; one flush at a time stores everything queued in one
    transaction (group commit), so under load a transaction carries many messages, and
    alone a batch is stored at once. A partition's next batch is only delivered after its
    handler returned, so group commit never reorders a room.

    With ``linger_seconds``, a flush that starts from idle first waits that long (or until
    a transaction's worth is queued) for more batches to join it: at a modest rate, when
    batches come one at a time, it trades that much delivery latency for fewer
    transactions (a transaction costs the worker and the database far more than a message
    in it does). Flushes that follow each other under load do not wait: what arrived
    meanwhile is already queued.

    If a transaction of several batches fails, each batch is stored on its own, so that
    a bad message fails only its own batch; the broker then retries that batch's messages
    one by one. Nothing is acknowledged unstored.
    """

    def __init__(
        self, broker: MessageBroker, store_messages: StoreMessages, linger_seconds: float = 0.0
    ) -> None:
        self._broker, self._store = broker, store_messages
        self._linger = linger_seconds
        self._queued: list[_Waiting] = []
        self._queued_messages = 0
        self._full = asyncio.Event()  # a transaction's worth is queued: stop lingering
        self._flushing: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Store what the broker delivers until the broker is closed."""
        log.info("consuming accepted messages")
        await self._broker.consume(self._handle)

    async def _handle(self, batch: Sequence[Message]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.append((batch, done))
        self._queued_messages += len(batch)
        if self._queued_messages >= TRANSACTION_MAX:
            self._full.set()
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
        await done  # a cancelled handler leaves its messages unacknowledged

    async def _flush(self) -> None:
        try:
            if self._linger > 0 and self._queued_messages < TRANSACTION_MAX:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._linger):
                        await self._full.wait()
            while self._queued:
                size, count = 0, 0
                for queued, _ in self._queued:
                    if count and size + len(queued) > TRANSACTION_MAX:
                        break
                    size, count = size + len(queued), count + 1
                group, self._queued = self._queued[:count], self._queued[count:]
                self._queued_messages -= size
                await self._store_group(group)
        finally:
            self._flushing = None

    async def _store_group(self, group: list[_Waiting]) -> None:
        if len(group) > 1:
            try:
                await self._store([message for batch, _ in group for message in batch])
            except Exception:
                log.warning("storing %d batches together failed; storing each alone", len(group))
            else:
                for _, done in group:
                    _settle(done)
                return
        for batch, done in group:
            try:
                await self._store(batch)
            except Exception as exc:
                log.warning("storing a batch of %d failed: %r", len(batch), exc)
                _settle(done, exc)
            else:
                _settle(done)


def _settle(done: asyncio.Future[None], error: Exception | None = None) -> None:
    if done.done():  # its handler was cancelled meanwhile
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
