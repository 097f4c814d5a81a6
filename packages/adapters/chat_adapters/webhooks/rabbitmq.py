"""The webhook outbox in RabbitMQ: one durable quorum queue, one active dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
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


def _fields(event: WebhookEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "room_id": event.room_id,
        "timestamp": event.timestamp,
        "data": event.data,
    }


def encode(events: Sequence[WebhookEvent]) -> bytes:
    """One AMQP message for a publish: a stored batch costs one confirm, not one per event."""
    return orjson.dumps([_fields(e) for e in events])


def decode(body: bytes) -> list[WebhookEvent]:
    raws: list[dict[str, Any]] = orjson.loads(body)
    events = [
        WebhookEvent(
            str(raw["id"]),
            str(raw["type"]),
            str(raw["room_id"]),
            int(raw["timestamp"]),
            raw["data"],
        )
        for raw in raws
    ]
    if not events:
        raise ValueError("no event")
    return events


@dataclass
class _Delivery:
    """An AMQP message of several events: acknowledged once each was handled."""

    incoming: AbstractIncomingMessage
    left: int


class RabbitMQWebhookOutbox(WebhookOutbox):
    """Events in the quorum queue ``{prefix}.webhooks``, dead letters in ``…webhooks.dead``.

    Each ``publish`` is one AMQP message (a stored batch's events together). The queue
    has a single active consumer, so one dispatcher (of all the workers) delivers at a
    time and the others stand by. It takes up to ``prefetch`` messages and runs their
    events in per-room lanes, acknowledging a message once each of its events was
    delivered or set aside: a room
    keeps its order while a receiver stuck on one room does not hold the rest (until
    ``prefetch`` events wait behind stuck rooms). A dispatcher that stops hands back
    what it did not acknowledge; RabbitMQ redelivers it (duplicates share an id).
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        prefetch: int = 64,
        publish_timeout: float = 5.0,
        reconnect_interval: float = 1.0,
    ) -> None:
        self._url, self._prefix, self._prefetch = url, prefix, prefetch
        self._publish_timeout, self._reconnect_interval = publish_timeout, reconnect_interval
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._setup: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()  # connected once and the queues are declared
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
        # In the background, like the message broker's: a process started while RabbitMQ
        # is down runs (publishes fail as Unavailable) and connects when it is back.
        if self._setup is None and not self._closed:
            self._setup = asyncio.create_task(self._connect_and_declare())

    async def _connect_and_declare(self) -> None:
        self._connection = aio_pika.RobustConnection(
            aio_pika.connection.make_url(self._url),
            reconnect_interval=self._reconnect_interval,
            fail_fast=False,
            client_properties={"connection_name": f"chat-webhooks {self._prefix}"},
        )
        await self._connection.connect()
        while True:
            try:
                channel = await self._connection.channel(
                    publisher_confirms=True, on_return_raises=True
                )
                await self._declare(channel)
                self._channel = channel
                self._ready.set()
                return
            except (*_ERRORS, RuntimeError) as exc:  # RuntimeError: not connected yet
                log.error("cannot declare the webhook queues, retrying: %r", exc)
                await asyncio.sleep(self._reconnect_interval)

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
        if self._setup is not None and not self._setup.done():
            self._setup.cancel()
            await asyncio.gather(self._setup, return_exceptions=True)
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()

    async def check(self) -> None:
        if self._closed or not self._ready.is_set() or self._connection is None:
            raise Unavailable("webhook outbox unavailable")
        if self._connection.is_closed:
            raise Unavailable("webhook outbox unavailable")

    async def publish(self, events: Sequence[WebhookEvent]) -> None:
        await self._publish(self.queue_name, [(encode(events), events[0].id)] if events else [])

    async def _publish(self, queue: str, bodies: Sequence[tuple[bytes, str]]) -> None:
        if self._closed or self._setup is None:
            raise Unavailable("webhook outbox unavailable")
        try:
            # The robust channel waits for a reconnect with no limit of its own.
            async with asyncio.timeout(self._publish_timeout):
                await self._ready.wait()
                assert self._channel is not None
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
        if self._closed or self._setup is None:
            return
        stopping = asyncio.ensure_future(self._stopping.wait())
        ready = asyncio.ensure_future(self._ready.wait())
        await asyncio.wait({stopping, ready}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        ready.cancel()
        if self._closed or self._connection is None:
            return
        self._consuming = asyncio.get_running_loop().create_future()
        try:
            channel = await self._connection.channel()
            await channel.set_qos(prefetch_count=self._prefetch)
            queue = await self._declare(channel)
        except BaseException:
            self._consuming.set_result(None)
            raise

        async def handle(item: tuple[WebhookEvent, _Delivery]) -> None:
            event, delivery = item
            await handler(event)
            delivery.left -= 1
            if delivery.left == 0:
                await delivery.incoming.ack()

        lanes: RoomLanes[tuple[WebhookEvent, _Delivery]] = RoomLanes(handle)

        async def arrive(incoming: AbstractIncomingMessage) -> None:
            # Deliveries run as concurrent tasks (aiormq): nothing awaited before the
            # lanes take the events, so they keep the queue's order.
            try:
                events = decode(incoming.body)
            except Exception:  # no attempt could ever succeed
                log.error("undecodable webhook message %s set aside", incoming.message_id)
                await self._publish(self.dead_letter_name, [(incoming.body, "")])
                await incoming.ack()
                return
            delivery = _Delivery(incoming, len(events))
            for event in events:
                lanes.put(event.room_id, (event, delivery))

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
        body = orjson.dumps({"event": _fields(event), "url": url, "reason": reason})
        await self._publish(self.dead_letter_name, [(body, event.id)])
