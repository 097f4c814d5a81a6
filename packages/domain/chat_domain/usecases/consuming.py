"""The consumer loop: broker -> StoreMessages (store with the next seq, emit message:new).

Both processes that consume run it: `chat worker`, and `chat serve` in embedded mode. It
knows only ports and a use case, so it lives beside the use cases; what it consumed is
counted by the broker's metered wrapper (adapters), not here.
"""

from __future__ import annotations

import asyncio
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

    If a transaction of several batches fails, each batch is stored on its own, so that
    a bad message fails only its own batch; the broker then retries that batch's messages
    one by one. Nothing is acknowledged unstored.
    """

    def __init__(self, broker: MessageBroker, store_messages: StoreMessages) -> None:
        self._broker, self._store = broker, store_messages
        self._queued: list[_Waiting] = []
        self._flushing: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Store what the broker delivers until the broker is closed."""
        log.info("consuming accepted messages")
        await self._broker.consume(self._handle)

    async def _handle(self, batch: Sequence[Message]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.append((batch, done))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
        await done  # a cancelled handler leaves its messages unacknowledged

    async def _flush(self) -> None:
        try:
            while self._queued:
                size, count = 0, 0
                for queued, _ in self._queued:
                    if count and size + len(queued) > TRANSACTION_MAX:
                        break
                    size, count = size + len(queued), count + 1
                group, self._queued = self._queued[:count], self._queued[count:]
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
