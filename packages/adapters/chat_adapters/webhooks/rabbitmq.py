"""The webhook outbox in RabbitMQ: one durable quorum queue, one active dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError

from chat_adapters.webhooks.lanes import RoomLanes
from chat_domain.errors import Unavailable
from chat_domain.ports.webhooks import WebhookEvent, WebhookEventHandler, WebhookOutbox

log = logging.getLogger(__name__)

_ERRORS = (TimeoutError, AMQPError, ConnectionError, ChannelInvalidStateError)


def encode(event: WebhookEvent) -> bytes:
    return orjson.dumps(
        {
            "id": event.id,
            "type": event.type,
            "room_id": event.room_id,
            "timestamp": event.timestamp,
            "data": event.data,
        }
    )


def decode(body: bytes) -> WebhookEvent:
    raw: dict[str, Any] = orjson.loads(body)
    return WebhookEvent(
        str(raw["id"]), str(raw["type"]), str(raw["room_id"]), int(raw["timestamp"]), raw["data"]
    )


class RabbitMQWebhookOutbox(WebhookOutbox):
    """Events in the quorum queue ``{prefix}.webhooks``, dead letters in ``…webhooks.dead``.

    The queue has a single active consumer, so one dispatcher (of all the workers)
    delivers at a time and the others stand by. It takes up to ``prefetch`` events and
    runs them in per-room lanes, acknowledging each once delivered or set aside: a room
    keeps its order while a receiver stuck on one room does not hold the rest (until
    ``prefetch`` events wait behind stuck rooms). A dispatcher that stops hands back
    what it did not acknowledge; RabbitMQ redelivers it (duplicates share an id).
    """

    def __init__(
        self, url: str, prefix: str, prefetch: int = 64, publish_timeout: float = 5.0
    ) -> None:
        self._url, self._prefix, self._prefetch = url, prefix, prefetch
        self._publish_timeout = publish_timeout
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._stopping = asyncio.Event()
        self._consuming: asyncio.Future[None] | None = None
        self._closed = False

    @property
    def queue_name(self) -> str:
        return f"{self._prefix}.webhooks"

    @property
    def dead_letter_name(self) -> str:
        return f"{self._prefix}.webhooks.dead"

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(
            self._url,
            client_properties={"connection_name": f"chat-webhooks {self._prefix}"},
        )
        self._channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        await self._declare(self._channel)

    async def _declare(self, channel: AbstractRobustChannel) -> AbstractQueue:
        await channel.declare_queue(
            self.dead_letter_name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        return await channel.declare_queue(
            self.queue_name,
            durable=True,
            arguments={"x-queue-type": "quorum", "x-single-active-consumer": True},
        )

    async def close(self) -> None:
        self._closed = True
        self._stopping.set()
        if self._consuming is not None:
            await asyncio.gather(self._consuming, return_exceptions=True)
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()

    async def check(self) -> None:
        if self._closed or self._connection is None or self._connection.is_closed:
            raise Unavailable("webhook outbox unavailable")

    async def publish(self, events: Sequence[WebhookEvent]) -> None:
        await self._publish(self.queue_name, [(encode(e), e.id) for e in events])

    async def _publish(self, queue: str, bodies: Sequence[tuple[bytes, str]]) -> None:
        if self._closed or self._channel is None:
            raise Unavailable("webhook outbox unavailable")
        try:
            # The robust channel waits for a reconnect with no limit of its own.
            async with asyncio.timeout(self._publish_timeout):
                exchange = self._channel.default_exchange
                for body, message_id in bodies:
                    await exchange.publish(
                        aio_pika.Message(
                            body,
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            message_id=message_id,
                            content_type="application/json",
                        ),
                        routing_key=queue,
                        mandatory=True,
                    )
        except _ERRORS as exc:
            raise Unavailable("webhook outbox unavailable") from exc

    async def consume(self, handler: WebhookEventHandler) -> None:
        if self._closed or self._connection is None:
            return
        self._consuming = asyncio.get_running_loop().create_future()
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self._prefetch)
        queue = await self._declare(channel)

        async def handle(incoming: AbstractIncomingMessage) -> None:
            try:
                event = decode(incoming.body)
            except Exception:  # no attempt could ever succeed
                log.error("undecodable webhook event %s set aside", incoming.message_id)
                await self._publish(self.dead_letter_name, [(incoming.body, "")])
            else:
                await handler(event)
            await incoming.ack()

        lanes: RoomLanes[AbstractIncomingMessage] = RoomLanes(handle)

        async def arrive(incoming: AbstractIncomingMessage) -> None:
            try:
                room_id = str(orjson.loads(incoming.body)["room_id"])
            except Exception:
                room_id = ""  # undecodable: its own lane, set aside there
            lanes.put(room_id, incoming)

        try:
            tag = await queue.consume(arrive)
            await self._stopping.wait()
            with contextlib.suppress(*_ERRORS):
                await queue.cancel(tag)
        finally:
            await lanes.close()
            # Closing the channel hands every unacknowledged event back to the queue.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await channel.close()
            self._consuming.set_result(None)

    async def set_aside(self, event: WebhookEvent, url: str, reason: str) -> None:
        body = orjson.dumps({"event": orjson.loads(encode(event)), "url": url, "reason": reason})
        await self._publish(self.dead_letter_name, [(body, event.id)])
