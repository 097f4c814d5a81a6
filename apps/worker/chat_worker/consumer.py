"""The consumer loop: broker -> StoreMessages (store with the next seq, emit message:new)."""

from __future__ import annotations

import asyncio
import logging

from chat_domain.entities import Message
from chat_domain.ports.broker import MessageBroker
from chat_domain.ports.system import Clock
from chat_domain.usecases.messages import StoreMessages
from chat_worker.metrics import CONSUME_SECONDS, MESSAGES_FAILED, MESSAGES_STORED

log = logging.getLogger("chat.worker")

BATCH_MAX = 64

_Waiting = tuple[Message, "asyncio.Future[None]"]


class MessageConsumer:
    """Stores what the broker delivers, acknowledging each message only once it is stored.

    The broker hands messages over concurrently (one in hand per partition). Each
    handler call queues its message and waits; one flush at a time stores everything
    queued in one transaction (group commit), so under load a transaction carries many
    messages, and alone a message is stored at once. A room's next message is only
    delivered after its handler returned, so batching never reorders a room.

    If a batch fails, its messages are stored one by one, so that one bad message fails
    alone. A failure is logged and re-raised to the broker, which redelivers the message
    (and dead-letters it after its attempts run out); nothing is acknowledged unstored.
    """

    def __init__(self, broker: MessageBroker, store_messages: StoreMessages, clock: Clock) -> None:
        self._broker, self._store, self._clock = broker, store_messages, clock
        self._queued: list[_Waiting] = []
        self._flushing: asyncio.Task[None] | None = None

    async def run(self) -> None:
        log.info("consuming accepted messages")
        await self._broker.consume(self._handle)

    async def _handle(self, message: Message) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.append((message, done))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
        await done  # a cancelled handler leaves its message unacknowledged, as before
        MESSAGES_STORED.inc()
        CONSUME_SECONDS.observe((self._clock.now() - message.created_at).total_seconds())

    async def _flush(self) -> None:
        try:
            while self._queued:
                batch, self._queued = self._queued[:BATCH_MAX], self._queued[BATCH_MAX:]
                await self._store_batch(batch)
        finally:
            self._flushing = None

    async def _store_batch(self, batch: list[_Waiting]) -> None:
        if len(batch) > 1:
            try:
                await self._store([message for message, _ in batch])
            except Exception:
                log.warning("storing a batch of %d failed; storing one by one", len(batch))
            else:
                for _, done in batch:
                    _settle(done)
                return
        for message, done in batch:
            try:
                await self._store([message])
            except Exception as exc:
                MESSAGES_FAILED.inc()
                log.exception("storing message %s of room %s failed", message.id, message.room_id)
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
