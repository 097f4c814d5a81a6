"""The RabbitMQ broker: partitioned quorum queues, confirmed publishes, ordered consumers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
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
from prometheus_client import Gauge

from chat_adapters.delivery import (
    DEAD_LETTERED,
    REDELIVERED,
    Outcome,
    deliver_in_order,
    forget_partition,
)
from chat_adapters.rabbitmq.codec import decode, encode, partition_of
from chat_domain.entities import Message
from chat_domain.errors import Unavailable
from chat_domain.ports.broker import DeadLetter, MessageBatchHandler, MessageBroker
from chat_domain.ports.worker_group import WorkerGroup

log = logging.getLogger(__name__)

PARTITIONS_HELD = Gauge(
    "chat_worker_partitions_held",
    "Broker partitions this worker is subscribed to (the worker group's share for it)",
)
PARTITION_HELD = Gauge(
    "chat_worker_partition_held", "1 for each broker partition this worker holds", ["partition"]
)

# Dead letters read at once at most: the largest prefetch count AMQP can express.
DEAD_LETTERS_IN_HAND = 65_535

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
    away. Which partitions a consumer subscribes to, the worker ``group`` decides: each
    live worker gets a share of even load (the messages it handled per partition are
    reported at each heartbeat), and the shares follow workers joining and leaving
    (without a group, a consumer subscribes to every partition). Single-active-consumer
    stays the fence: during a handover two workers may be subscribed, one consumes.

    A consumer holds up to ``batch_size`` unacknowledged messages per partition, hands
    them on as one batch, and acks them only after the handler returned. With
    ``ack_delay``, a partition's handled batches are acknowledged together, with one
    ``multiple`` ack, at most that long after the first of them was handled (or once half
    a batch's worth is owed, or when the partition is let go): at a modest rate a batch
    is one message, and each ack is a settle command in the quorum queue's log. A worker
    killed meanwhile leaves those messages to be delivered again (stored once, emitted
    again, as for the batch in hand). A failing
    message is retried in place (its room waits) and after ``max_attempts``
    dead-lettered to ``{prefix}.dead`` and logged. There it stays until replayed. That
    queue's order means little: RabbitMQ's at-least-once dead-letter worker republishes
    a burst out of order, and a quorum queue given back unsettled messages requeues them
    out of order too (both seen on 3.10). So a listing reads every dead letter (and puts
    it back, see ``_dead_letters_in_hand``) and sorts them by when they were set aside,
    and a replay publishes in acceptance order.

    Nothing connects before ``start()``, which returns at once: the robust connection
    keeps trying in the background, ``publish`` raises ``Unavailable`` after
    ``publish_timeout`` while the broker is away, and everything resumes by itself.
    """

    def __init__(
        self,
        url: str,
        prefix: str = "chat",
        partitions: int = 32,
        max_attempts: int = 5,
        publish_timeout: float = 5.0,
        *,
        retry_backoff: float = 0.2,
        reconnect_interval: float = 2.0,
        close_timeout: float = 30.0,
        batch_size: int = 64,
        ack_delay: float = 0.0,
        group: WorkerGroup | None = None,
    ) -> None:
        if partitions < 1 or max_attempts < 1 or batch_size < 1:
            raise ValueError("partitions, max_attempts and batch_size must be at least 1")
        if ack_delay < 0:
            raise ValueError("ack_delay must not be negative")
        self._batch_size, self._ack_delay = batch_size, ack_delay
        self._url, self._prefix, self._partitions = url, prefix, partitions
        self._max_attempts, self._publish_timeout = max_attempts, publish_timeout
        self._retry_backoff, self._reconnect_interval = retry_backoff, reconnect_interval
        self._close_timeout = close_timeout
        self._group = group
        self._connection: AbstractRobustConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._setup: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()  # connected once and the topology is declared
        self._stopping = asyncio.Event()
        self._consumers_done: list[asyncio.Event] = []
        self._closed = False
        # Messages handled per partition since the group last heard of it (its loads).
        self._handled: Counter[int] = Counter()

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
        if self._group is not None:  # its only user: it closes the group's connection
            await self._group.close()

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

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        # The queue's own order says little (see the class): read them all, sort, cut.
        async with self._dead_letters_in_hand() as taken:
            by_id = {(dead := _dead_letter(incoming)).message_id: dead for incoming in taken}
        listed = sorted(by_id.values(), key=_set_aside_order)
        return listed[:limit]

    async def replay_dead_letters(self, message_ids: Collection[str] | None) -> list[str]:
        replayed: list[str] = []
        async with self._dead_letters_in_hand() as taken:
            chosen: dict[str, tuple[Message, list[AbstractIncomingMessage]]] = {}
            for incoming in taken:
                if message_ids is not None and incoming.message_id not in message_ids:
                    continue
                try:
                    message = decode(incoming.body)
                except Exception:
                    log.warning("dead letter %s is unreadable: left", incoming.message_id)
                    continue
                chosen.setdefault(message.id, (message, []))[1].append(incoming)
            # In acceptance order, so that a room's replayed messages keep their order.
            for message, copies in sorted(chosen.values(), key=lambda c: c[0].created_at):
                await self.publish(message)  # confirmed: then it can leave the dead letters
                for incoming in copies:
                    await incoming.ack()
                    taken.remove(incoming)
                replayed.append(message.id)
                log.info("dead letter %s replayed to its partition", message.id)
        return replayed

    @contextlib.asynccontextmanager
    async def _dead_letters_in_hand(self) -> AsyncIterator[list[AbstractIncomingMessage]]:
        """Every dead letter (up to ``DEAD_LETTERS_IN_HAND``), taken unacknowledged on a
        channel of its own. What is left in the list at the end goes back to the tail of
        the queue as a copy, confirmed before the original is acknowledged: a quorum
        queue requeues asynchronously, so a listing right after another missed what the
        first had just given back (seen on 3.10). A copy twice (a crash in between) is
        listed once and replayed once: they are told apart by message id."""
        if self._closed or self._setup is None:
            raise Unavailable("message broker unavailable")
        taken: list[AbstractIncomingMessage] = []
        try:
            async with asyncio.timeout(self._publish_timeout):
                await self._ready.wait()
            assert self._connection is not None
            async with self._connection.channel(publisher_confirms=True) as channel:
                queue = await channel.declare_queue(
                    self.dead_letter_name, durable=True, arguments={"x-queue-type": "quorum"}
                )
                await self._take_all(channel, queue, taken)
                yield taken
                dead = await channel.get_exchange(self.dead_letter_name, ensure=False)
                # Confirms pipelined: all copies in flight at once, each original
                # acknowledged once its own copy is confirmed.
                async with asyncio.timeout(self._publish_timeout + len(taken) / 1000):
                    await asyncio.gather(*(_put_back(dead, incoming) for incoming in taken))
        except _PUBLISH_ERRORS as exc:
            raise Unavailable("message broker unavailable") from exc

    async def _take_all(
        self, channel: AbstractChannel, queue: AbstractQueue, taken: list[AbstractIncomingMessage]
    ) -> None:
        """Take, unacknowledged, what is ready in ``queue`` now (not what comes later).

        A consumer whose prefetch is that count: RabbitMQ pushes them all at once (a
        basic.get each was a round trip each, 3.4 s for 1,000 here), and none beyond.
        """
        count = min(queue.declaration_result.message_count or 0, DEAD_LETTERS_IN_HAND)
        if not count:
            return
        all_in = asyncio.Event()

        async def arrive(incoming: AbstractIncomingMessage) -> None:
            taken.append(incoming)
            if len(taken) >= count:
                all_in.set()

        await channel.set_qos(prefetch_count=count)
        tag = await queue.consume(arrive)
        try:
            # Fewer come if another reader took some meanwhile: go on with those.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._publish_timeout + count / 1000):
                    await all_in.wait()
        finally:
            await queue.cancel(tag)

    async def consume(self, handler: MessageBatchHandler) -> None:
        """Run until ``close()``, consuming the partitions the worker group assigns to this
        member, and following the group as workers join and leave. If this call is
        cancelled instead (a hard stop), the batches in hand are cancelled and their
        messages go back unacknowledged."""
        if self._closed:
            return
        done = asyncio.Event()
        self._consumers_done.append(done)
        held: dict[int, _Partition] = {}
        releasing: dict[int, tuple[_Partition, asyncio.Task[None]]] = {}
        try:
            await self._ready_or_stopping()
            if not self._stopping.is_set():
                await self._follow_group(handler, held, releasing)
            # Graceful: out of the group first, so that the others subscribe at their next
            # heartbeat; then each partition finishes its batch in hand and is let go.
            await self._leave_group()
            for index in list(held):
                partition = held.pop(index)
                releasing[index] = (partition, asyncio.create_task(self._release(partition)))
            if releasing:
                await asyncio.wait([task for _, task in releasing.values()])
        finally:
            for _, task in releasing.values():
                task.cancel()
            await asyncio.gather(*(task for _, task in releasing.values()), return_exceptions=True)
            for partition in [*held.values(), *(p for p, _ in releasing.values())]:
                await self._abandon(partition)
            _show_held(set(held) | set(releasing), set())
            done.set()

    async def _follow_group(
        self,
        handler: MessageBatchHandler,
        held: dict[int, _Partition],
        releasing: dict[int, tuple[_Partition, asyncio.Task[None]]],
    ) -> None:
        """Heartbeat into the group and hold the partitions it assigns us, until stopping.

        Without an answer from the group for longer than a lease, hold every partition:
        single-active-consumer still lets one worker at a time consume each, and the
        partitions of a worker that died meanwhile are not left without a consumer.
        """
        every = frozenset(range(self._partitions))
        group = self._group
        loop = asyncio.get_running_loop()
        heard = loop.time()  # the group's last answer (or our start)
        wanted: frozenset[int] = every if group is None else frozenset()
        cut_off = False
        while not self._stopping.is_set():
            if group is not None:
                handled, self._handled = self._handled, Counter()
                try:
                    mine = await group.share(self._partitions, handled)
                except Unavailable as exc:
                    self._handled.update(handled)  # reported at the next answer instead
                    if loop.time() - heard > group.lease_seconds and not cut_off:
                        log.warning(
                            "worker group unreachable for a whole lease (%s): subscribing to "
                            "every partition, single-active-consumer fences each one",
                            exc,
                        )
                        cut_off, wanted = True, every
                else:
                    if cut_off:
                        log.warning("worker group reachable again: back to our share")
                    heard, cut_off = loop.time(), False
                    wanted = mine
            await self._rebalance(wanted, handler, held, releasing)
            interval = self._reconnect_interval if group is None else group.heartbeat_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval)

    async def _rebalance(
        self,
        wanted: frozenset[int],
        handler: MessageBatchHandler,
        held: dict[int, _Partition],
        releasing: dict[int, tuple[_Partition, asyncio.Task[None]]],
    ) -> None:
        for index, (_, task) in list(releasing.items()):
            if task.done():
                del releasing[index]
        lost = sorted(set(held) - wanted)
        for index in lost:
            partition = held.pop(index)
            releasing[index] = (partition, asyncio.create_task(self._release(partition)))
        gained: list[int] = []
        for index in sorted(wanted - set(held)):
            if index in releasing:
                continue  # still finishing its batch from before: take it next round
            try:
                held[index] = await self._hold(index, handler)
            except _CONNECTION_ERRORS as exc:
                # The robust connection comes back by itself: try again next round.
                log.warning("cannot subscribe to partition %d yet, retrying: %r", index, exc)
                break
            gained.append(index)
        if gained or lost:
            log.info(
                "partitions rebalanced: gained %s, released %s; holding %d: %s",
                gained,
                lost,
                len(held),
                sorted(held),
                extra={"partitions_held": sorted(held)},
            )
            _show_held(set(lost), set(held))

    async def _hold(self, index: int, handler: MessageBatchHandler) -> _Partition:
        """Subscribe to one partition, on a channel of its own, and start handing it on.

        A channel per partition, so that one ack with ``multiple`` settles a whole batch
        (every earlier delivery on that channel is the partition's own), and so that
        letting a partition go is closing its channel: what it had delivered and not
        acknowledged goes back to the head of the queue, in order. The robust channel
        restores the subscription after a reconnect.
        """
        partition = _Partition(index)
        channel = self._new_channel(publisher_confirms=False)
        try:
            try:
                await channel
            except RuntimeError as exc:
                # aiormq's "<Connection ...> closed": the connection dropped between taking
                # a channel and opening it (a broker restart). A lost connection, to retry
                # next round like any other, not a crash of the worker.
                raise AMQPConnectionError("RabbitMQ connection closed while subscribing") from exc
            # Up to a batch in hand. aiormq runs every delivery in a task of its own, but
            # ``_Partition.arrive`` only queues it, in delivery order; one drain per
            # partition hands them on, so a room's messages never overtake.
            await channel.set_qos(prefetch_count=self._batch_size)
            queue = await channel.declare_queue(
                self.queue_names()[index], durable=True, arguments=self._queue_arguments()
            )
            await queue.consume(partition.arrive)
        except BaseException:
            with contextlib.suppress(Exception):
                await channel.close()
            raise
        partition.channel = channel
        partition.drain = asyncio.create_task(self._drain(partition, handler))
        return partition

    async def _release(self, partition: _Partition) -> None:
        """Let a partition go: finish the batch in hand (within ``close_timeout``), then
        close its channel so that single-active-consumer hands it to the next worker."""
        partition.stop.set()
        partition.arrived.set()
        try:
            if partition.drain is not None:
                await asyncio.wait({partition.drain}, timeout=self._close_timeout)
        finally:
            await self._abandon(partition)

    async def _abandon(self, partition: _Partition) -> None:
        partition.stop.set()
        if partition.drain is not None:
            partition.drain.cancel()
            await asyncio.gather(partition.drain, return_exceptions=True)
        if partition.channel is not None:
            # Closing hands every message delivered but not acknowledged back, to the
            # head of the queue; single active consumer then lets another worker take
            # the partition, in order.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await partition.channel.close()

    async def _leave_group(self) -> None:
        if self._group is None:
            return
        try:
            async with asyncio.timeout(self._group.heartbeat_seconds):
                await self._group.leave()
        except (Unavailable, TimeoutError) as exc:
            log.warning("could not leave the worker group, our lease will run out: %s", exc)

    async def _drain(self, partition: _Partition, handler: MessageBatchHandler) -> None:
        try:
            await self._drain_until_stopped(partition, handler)
        finally:
            # What was handled is acknowledged before the channel closes, on a hard stop
            # too (it is stored); the batch in hand, unhandled, is delivered again.
            await partition.settle_owed()

    async def _drain_until_stopped(
        self, partition: _Partition, handler: MessageBatchHandler
    ) -> None:
        loop = asyncio.get_running_loop()
        while not partition.stop.is_set():
            if partition.owed is not None and loop.time() >= partition.owed_until:
                await partition.settle_owed()
            if not partition.pending:
                partition.arrived.clear()
                if partition.owed is None:
                    await partition.arrived.wait()
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout_at(partition.owed_until):
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
                if incoming.redelivered or _delivery_count(incoming):
                    REDELIVERED.inc()
                try:
                    batch.append((incoming, decode(incoming.body)))
                except Exception:  # no attempt could ever succeed
                    log.error("undecodable message %s dead-lettered", incoming.message_id)
                    DEAD_LETTERED.inc()
                    await _settle(incoming.reject(requeue=False))
            if not batch:
                continue
            outcomes = await deliver_in_order(
                [message for _, message in batch],
                handler,
                earlier_attempts=[_delivery_count(incoming) for incoming, _ in batch],
                max_attempts=self._max_attempts,
                retry_backoff=self._retry_backoff,
                stopping=partition.stop,
                partition=partition.index,
            )
            self._handled[partition.index] += sum(o is Outcome.HANDLED for o in outcomes)
            if all(outcome is Outcome.HANDLED for outcome in outcomes):
                # The whole batch at once, with those handled before it if still owed.
                partition.owe(batch[-1][0], len(batch), loop.time() + self._ack_delay)
                if self._ack_delay <= 0 or partition.owed_count * 2 >= self._batch_size:
                    await partition.settle_owed()
                continue
            # Settled one by one below: a later ``multiple`` ack must not cover them.
            await partition.settle_owed()
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
                await self._warn_of_queues_beyond_partitions()
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

    async def _warn_of_queues_beyond_partitions(self) -> None:
        """Warn if queues of a larger partition count still hold messages.

        Lowering ``partitions`` leaves ``{prefix}.messages.N`` for ``N >= partitions``
        declared, and nobody consumes them any more (docs/scaling.md: drain first). They
        were declared ``0..P-1``, so look from ``partitions`` up until one is missing.
        """
        assert self._connection is not None
        try:
            async with self._connection.channel() as channel:
                index = self._partitions
                while True:
                    name = f"{self._prefix}.messages.{index}"
                    try:
                        queue = await channel.declare_queue(name, passive=True)
                    except AMQPChannelError:
                        return  # not found (it also closed the channel): none beyond
                    waiting = queue.declaration_result.message_count or 0
                    if waiting:
                        log.warning(
                            "queue %s holds %d messages but only partitions 0..%d are "
                            "consumed (CHAT_RABBITMQ_PARTITIONS=%d): drain it with the "
                            "earlier partition count, see docs/scaling.md",
                            name,
                            waiting,
                            self._partitions - 1,
                            self._partitions,
                        )
                    index += 1
        except (AMQPError, ConnectionError, ChannelInvalidStateError) as exc:
            log.info("could not look for queues beyond the partitions: %r", exc)

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
    """One queue this consumer holds: what was delivered and not yet handed on."""

    index: int
    pending: deque[AbstractIncomingMessage] = field(default_factory=deque)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)  # let go after the batch in hand
    channel: AbstractChannel | None = None
    drain: asyncio.Task[None] | None = None
    # Handled, not yet acknowledged: the last such delivery (one ``multiple`` ack settles
    # it and every earlier one on this channel), how many, and by when to ack them.
    owed: AbstractIncomingMessage | None = None
    owed_count: int = 0
    owed_until: float = 0.0

    async def arrive(self, incoming: AbstractIncomingMessage) -> None:
        self.pending.append(incoming)
        self.arrived.set()

    def owe(self, last: AbstractIncomingMessage, count: int, until: float) -> None:
        if self.owed is None:
            self.owed_until = until
        self.owed, self.owed_count = last, self.owed_count + count

    async def settle_owed(self) -> None:
        owed, self.owed, self.owed_count = self.owed, None, 0
        if owed is not None and _channel_open(owed):
            # A closed channel's deliveries come again anyway (stored once).
            await _settle(owed.ack(multiple=True))


def _show_held(lost: set[int], held: set[int]) -> None:
    for index in lost - held:
        with contextlib.suppress(KeyError):
            PARTITION_HELD.remove(str(index))
        forget_partition(index)
    for index in held:
        PARTITION_HELD.labels(str(index)).set(1)
    PARTITIONS_HELD.set(len(held))


def _channel_open(incoming: AbstractIncomingMessage) -> bool:
    try:
        incoming.channel  # noqa: B018 - the property raises once the channel is closed
    except ChannelInvalidStateError:
        return False
    return True


_DEATH_REASONS = {
    "rejected": "failed every attempt in a worker (or unreadable)",
    "delivery_limit": "delivered too many times (its worker stopped each time)",
}


def _dead_letter(incoming: AbstractIncomingMessage) -> DeadLetter:
    """What the dead-letter queue tells of a message. Its ``x-death`` header says why and
    when; the failed attempts are not carried (the quorum queue counts deliveries afresh)."""
    deaths = incoming.headers.get("x-death")
    death: dict[str, Any] = {}
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        death = deaths[0]
    when = death.get("time")
    reason = str(death.get("reason", "unknown"))
    try:
        message: Message | None = decode(incoming.body)
    except Exception:
        message = None
    return DeadLetter(
        message_id=message.id if message else str(incoming.message_id),
        message=message,
        reason=_DEATH_REASONS.get(reason, reason),
        dead_lettered_at=when if isinstance(when, datetime) else None,
        attempts=None,
    )


async def _put_back(dead: AbstractExchange, incoming: AbstractIncomingMessage) -> None:
    await dead.publish(_copy(incoming), routing_key="", mandatory=True)
    await incoming.ack()


def _copy(incoming: AbstractIncomingMessage) -> aio_pika.Message:
    """A dead letter as it was: body, id and headers (``x-death`` says why and when)."""
    return aio_pika.Message(
        incoming.body,
        headers=incoming.headers,
        message_id=incoming.message_id,
        content_type=incoming.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def _set_aside_order(dead: DeadLetter) -> tuple[datetime, datetime, str]:
    earliest = datetime.min.replace(tzinfo=UTC)
    created = dead.message.created_at if dead.message else earliest
    return (dead.dead_lettered_at or earliest, created, dead.message_id)


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
