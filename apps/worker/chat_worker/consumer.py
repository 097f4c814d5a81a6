"""The consumer loop: broker -> StoreMessage (store with the next seq, emit message:new)."""

from __future__ import annotations

import logging

from chat_domain.entities import Message
from chat_domain.ports.broker import MessageBroker
from chat_domain.ports.system import Clock
from chat_domain.usecases.messages import StoreMessage
from chat_worker.metrics import CONSUME_SECONDS, MESSAGES_FAILED, MESSAGES_STORED

log = logging.getLogger("chat.worker")


class MessageConsumer:
    """Runs StoreMessage for each message the broker delivers, until the broker is closed.

    A failure is logged and re-raised, so the broker redelivers the message (and
    dead-letters it after its attempts run out); nothing is acknowledged unstored.
    """

    def __init__(self, broker: MessageBroker, store_message: StoreMessage, clock: Clock) -> None:
        self._broker, self._store, self._clock = broker, store_message, clock

    async def run(self) -> None:
        log.info("consuming accepted messages")
        await self._broker.consume(self._handle)

    async def _handle(self, message: Message) -> None:
        try:
            await self._store(message)
        except Exception:
            MESSAGES_FAILED.inc()
            log.exception("storing message %s of room %s failed", message.id, message.room_id)
            raise
        MESSAGES_STORED.inc()
        CONSUME_SECONDS.observe((self._clock.now() - message.created_at).total_seconds())
