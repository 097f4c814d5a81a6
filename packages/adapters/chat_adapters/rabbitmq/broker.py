"""The RabbitMQ broker: partitioned quorum queues, confirmed publishes, ordered consumers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import (
    AMQPChannelError,
    AMQPConnectionError,
    AMQPError,
    ChannelInvalidStateError,
)
from pamqp.common import FieldTable

from chat_adapters.delivery import Outcome, deliver_in_order
from chat_adapters.rabbitmq.codec import decode, encode, partition_of
from chat_domain.entities import Message
from chat_domain.errors import Unavailable
from chat_domain.ports.broker import MessageBatchHandler, MessageBroker

log = logging.getLogger(__name__)

# A publish lost with its connection or channel, as opposed to refused (nack, return).
_CONNECTION_ERRORS = (
    AMQPConnectionError,
    AMQPChannelError,
    ConnectionError,
    ChannelInvalidStateError,
)
# What a publish can fail with in the end: timeout (outage), nack/return, lost connection.
_PUBLISH_ERRORS = (TimeoutError, AMQPError, ConnectionError, ChannelInvalidStateError)


class RabbitMQBroker(MessageBroker):
    """Messages in ``partitions`` durable quorum queues, one room always in the same one.

    A room's queue is ``{prefix}.messages.{crc32(room_id) % partitions}``, reached
    through the direct exchange ``{prefix}.messages`` with the partition as routing
    key. Each queue has single-active-consumer, so with many workers a partition is
    drained by one of them at a time, in order, and another takes over when it goes
    away. A consumer holds up to ``batch_size`` unacknowledged messages per partition,
    hands them on as one batch, and acks them only after the handler returned. A
    failing message is retried in place (its room waits) and after ``max_attempts``
    dead-lettered to ``{prefix}.dead`` and logged.

    Nothing connects before ``start()``, which returns at once: the robust connection
    keeps trying in the background, ``publish`` raises ``Unavailable`` after
    ``publish_timeout`` while the broker is away, and everything resumes by itself.
    """

    def __init__(
        self,
        url: str,
        prefix: str = "chat",
        partitions: int = 8,
        max_attempts: int = 5,
        publish_timeout: float = 5.0,
        *,
        retry_backoff: float = 0.2,
        reconnect_interval: float = 2.0,
        close_timeout: float = 30.0,
        batch_size: int = 64,
    ) -> None:
        if partitions < 1 or max_attempts < 1 or batch_size < 1:
            raise ValueError("partitions, max_attempts and batch_size must be at least 1")
        self._batch_size = batch_size
        self._url, self._prefix, self._partitions = url, prefix, partitions
        self._max_attempts, self._publish_timeout = max_attempts, publish_timeout
        self._retry_backoff, self._reconnect_interval = retry_backoff, reconnect_interval
        self._close_timeout = close_timeout
        self._connection: AbstractRobustConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._setup: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()  # connected once and the topology is declared
        self._stopping = asyncio.Event()
        self._consumers_done: list[asyncio.Event] = []
        self._closed = False

    # Names, public so that operators and tests can find (and clean up) what we declare.
    @property
    def exchange_name(self) -> str:
        return f"{self._prefix}.messages"

    @property
    def dead_letter_name(self) -> str:
        return f"{self._prefix}.dead"

    def queue_names(self) -> list[str]:
        return [f"{self._prefix}.messages.{i}" for i in range(self._partitions)]

    async def start(self) -> None:
        if self._setup is None and not self._closed:
            self._setup = asyncio.create_task(self._connect_and_declare())

    async def close(self) -> None:
        self._closed = True
        self._stopping.set()
        for done in self._consumers_done:
            await done.wait()
        if self._setup is not None:
            self._setup.cancel()
            await asyncio.gather(self._setup, return_exceptions=True)
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()

    async def check(self) -> None:
        connection = self._connection
        if (
            self._closed
            or not self._ready.is_set()
            or connection is None
            or connection.is_closed
            or not connection.connected.is_set()
        ):
            raise Unavailable("message broker unavailable")

    async def publish(self, message: Message) -> None:
        if self._closed or self._setup is None:
            raise Unavailable("message broker unavailable")
        amqp_message = aio_pika.Message(
            encode(message),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.id,
            content_type="application/json",
        )
        routing_key = str(partition_of(message.room_id, self._partitions))
        try:
            # The robust channel waits for a reconnect with no limit of its own.
            async with asyncio.timeout(self._publish_timeout):
                await self._ready.wait()
                assert self._exchange is not None
                while True:
                    try:
                        await self._exchange.publish(
                            amqp_message, routing_key=routing_key, mandatory=True
                        )
                        return
                    except _CONNECTION_ERRORS:
                        # Lost with the connection, not refused: try again while the
                        # timeout allows. If it had reached the queue, the copy is
                        # harmless: the worker stores a message id once.
                        await asyncio.sleep(0.1)
        except _PUBLISH_ERRORS as exc:
            raise Unavailable("message broker unavailable") from exc

    async def consume(self, handler: MessageBatchHandler) -> None:
        """Run until ``close()``. If this call is cancelled instead (a hard stop), the
        batches in hand are cancelled and their messages go back unacknowledged."""
        if self._closed:
            return
        done = asyncio.Event()
        self._consumers_done.append(done)
        channels: list[AbstractChannel] = []
        partitions = [_Partition() for _ in range(self._partitions)]
        drains: list[asyncio.Task[None]] = []
        try:
            await self._ready_or_stopping()
            if self._stopping.is_set():
                return
            drains = [asyncio.create_task(self._drain(p, handler)) for p in partitions]
            while not channels:
                try:
                    channels = await self._subscribe(partitions)
                except _CONNECTION_ERRORS as exc:
                    # Lost the connection while subscribing: the robust connection
                    # comes back by itself, so try again rather than end the worker.
                    log.warning("cannot subscribe yet, retrying: %r", exc)
                    await asyncio.sleep(self._reconnect_interval)
            await self._stopping.wait()
            for partition in partitions:
                partition.arrived.set()  # graceful: each drain finishes its batch and ends
            await asyncio.wait(drains, timeout=self._close_timeout)
        finally:
            for drain in drains:
                drain.cancel()
            await asyncio.gather(*drains, return_exceptions=True)
            # Closing a channel hands every message delivered but not acknowledged back,
            # to the head of its queue; single active consumer then lets another worker
            # take the partition, in order.
            for opened in channels:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(5):
                        await opened.close()
            done.set()

    async def _subscribe(self, partitions: list[_Partition]) -> list[AbstractChannel]:
        """A channel consuming each partition; the robust channels restore all this.

        A channel of its own per partition, so that one ack with ``multiple`` settles a
        whole batch: every earlier delivery on that channel is the partition's own.
        """
        assert self._connection is not None
        channels: list[AbstractChannel] = []
        try:
            for name, partition in zip(self.queue_names(), partitions, strict=True):
                channel = self._new_channel(publisher_confirms=False)
                channels.append(channel)
                await channel
                # Up to a batch in hand. aiormq runs every delivery in a task of its own,
                # but ``_Partition.arrive`` only queues it, in delivery order; one drain
                # per partition hands them on, so a room's messages never overtake.
                await channel.set_qos(prefetch_count=self._batch_size)
                queue = await channel.declare_queue(
                    name, durable=True, arguments=self._queue_arguments()
                )
                await queue.consume(partition.arrive)
        except BaseException:
            for opened in channels:
                with contextlib.suppress(Exception):
                    await opened.close()
            raise
        return channels

    async def _drain(self, partition: _Partition, handler: MessageBatchHandler) -> None:
        while not self._stopping.is_set():
            if not partition.pending:
                partition.arrived.clear()
                await partition.arrived.wait()
                continue
            taken = [
                partition.pending.popleft()
                for _ in range(min(len(partition.pending), self._batch_size))
            ]
            batch = []
            for incoming in taken:
                if not _channel_open(incoming):
                    continue  # delivered on a channel lost since: it will come again
                try:
                    batch.append((incoming, decode(incoming.body)))
                except Exception:  # no attempt could ever succeed
                    log.error("undecodable message %s dead-lettered", incoming.message_id)
                    await _settle(incoming.reject(requeue=False))
            if not batch:
                continue
            outcomes = await deliver_in_order(
                [message for _, message in batch],
                handler,
                earlier_attempts=[_delivery_count(incoming) for incoming, _ in batch],
                max_attempts=self._max_attempts,
                retry_backoff=self._retry_backoff,
                stopping=self._stopping,
            )
            if all(outcome is Outcome.HANDLED for outcome in outcomes):
                await _settle(batch[-1][0].ack(multiple=True))  # the whole batch at once
                continue
            for (incoming, message), outcome in zip(batch, outcomes, strict=True):
                if outcome is Outcome.HANDLED:
                    await _settle(incoming.ack())
                elif outcome is Outcome.DEAD:
                    log.error("message %s moved to %s", message.id, self.dead_letter_name)
                    await _settle(incoming.reject(requeue=False))
                # STOPPED: left unacknowledged; the channel's close gives it back.

    async def _connect_and_declare(self) -> None:
        # fail_fast=False: the first connection is retried like any reconnection, so a
        # server started while RabbitMQ is down serves (503 on send) and recovers.
        self._connection = aio_pika.RobustConnection(
            aio_pika.connection.make_url(self._url),
            reconnect_interval=self._reconnect_interval,
            fail_fast=False,
            client_properties={"connection_name": f"chat-broker {self._prefix}"},
        )
        await self._connection.connect()
        while True:
            channel: AbstractRobustChannel | None = None
            try:
                channel = self._new_channel(publisher_confirms=True, on_return_raises=True)
                await channel
                self._exchange = await self._declare(channel)
                self._ready.set()
                return
            except (AMQPError, ConnectionError, ChannelInvalidStateError) as exc:
                # E.g. PRECONDITION_FAILED: queues declared earlier with other arguments.
                log.error("cannot declare the broker topology, retrying: %r", exc)
                if channel is not None:
                    with contextlib.suppress(Exception):
                        await channel.close()
                await asyncio.sleep(self._reconnect_interval)

    def _new_channel(self, **options: Any) -> AbstractRobustChannel:
        assert self._connection is not None
        try:
            return self._connection.channel(**options)
        except RuntimeError as exc:  # aio-pika's "Connection was not opened": reconnecting
            raise AMQPConnectionError("not connected to RabbitMQ yet") from exc

    async def _declare(self, channel: AbstractChannel) -> AbstractExchange:
        """Declare everything (idempotent); a robust channel re-declares it on reconnect."""
        dead_exchange = await channel.declare_exchange(
            self.dead_letter_name, aio_pika.ExchangeType.FANOUT, durable=True
        )
        dead_queue = await channel.declare_queue(
            self.dead_letter_name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead_queue.bind(dead_exchange)
        exchange = await channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.DIRECT, durable=True
        )
        for i, name in enumerate(self.queue_names()):
            queue = await channel.declare_queue(
                name, durable=True, arguments=self._queue_arguments()
            )
            await queue.bind(exchange, routing_key=str(i))
        return exchange

    def _queue_arguments(self) -> FieldTable:
        return {
            "x-queue-type": "quorum",
            "x-single-active-consumer": True,
            # The consumer dead-letters after max_attempts itself (and logs it); this
            # limit is the safety net for a message that kills its worker every time.
            "x-delivery-limit": self._max_attempts,
            "x-dead-letter-exchange": self.dead_letter_name,
            # At-least-once dead-lettering needs both (RabbitMQ 3.10+), else a message
            # could be lost on its way to the dead-letter queue.
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }

    async def _ready_or_stopping(self) -> None:
        waiters = [
            asyncio.create_task(self._ready.wait()),
            asyncio.create_task(self._stopping.wait()),
        ]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()


@dataclass
class _Partition:
    """The messages of one queue delivered to this consumer and not yet handed on."""

    pending: deque[AbstractIncomingMessage] = field(default_factory=deque)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def arrive(self, incoming: AbstractIncomingMessage) -> None:
        self.pending.append(incoming)
        self.arrived.set()


def _channel_open(incoming: AbstractIncomingMessage) -> bool:
    try:
        incoming.channel  # noqa: B018 - the property raises once the channel is closed
    except ChannelInvalidStateError:
        return False
    return True


def _delivery_count(incoming: AbstractIncomingMessage) -> int:
    """Earlier deliveries of this message, as the quorum queue counts them."""
    count = incoming.headers.get("x-delivery-count", 0)
    return count if isinstance(count, int) else 0


async def _settle(settling: Any) -> None:
    """Ack or reject; after a reconnect the old channel is gone, so the broker
    redelivers the message anyway (the handler is idempotent by message id)."""
    try:
        await settling
    except (AMQPError, ChannelInvalidStateError, ConnectionError) as exc:
        log.warning("could not settle a message, it will be redelivered: %r", exc)
