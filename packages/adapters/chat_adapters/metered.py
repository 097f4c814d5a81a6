"""Prometheus-metered decorators of the broker and notifier ports.

Why wrappers rather than timing inside SendMessage or each adapter: the publish
latency that matters is the broker's confirm round trip alone (not the membership
check SendMessage does first), it must be the same metric for the in-memory and
the RabbitMQ broker, and the domain stays free of prometheus. Consuming is metered
here too: what a consumer stored, failed, and how long after acceptance. The container wraps
whichever adapter its Selector picked, so every caller (REST, socket.io, worker)
is measured in one place.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Sequence

from prometheus_client import Counter, Histogram

from chat_domain.entities import Message
from chat_domain.ports.broker import DeadLetter, MessageBatchHandler, MessageBroker
from chat_domain.ports.notifier import Notification, Payload, RealtimeNotifier
from chat_domain.ports.system import Clock

MESSAGES_ACCEPTED = Counter(
    "chat_messages_accepted_total",
    "Messages accepted: the broker confirmed it holds them (the 202 of a send)",
)
PUBLISH_FAILURES = Counter(
    "chat_broker_publish_failures_total", "Publishes the broker did not confirm (nothing accepted)"
)
PUBLISH_SECONDS = Histogram(
    "chat_broker_publish_seconds",
    "Broker publish latency, until the publisher confirm (failed attempts included)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# Consumer metrics (a worker's; in embedded mode the server's /metrics has them too).
MESSAGES_STORED = Counter(
    "chat_messages_stored_total", "Messages stored and fanned out by a worker"
)
MESSAGES_FAILED = Counter(
    "chat_messages_store_failures_total", "Attempts to store a message that raised (it is retried)"
)
CONSUME_SECONDS = Histogram(
    "chat_broker_consume_seconds",
    "From a message's acceptance to its storage and fan-out",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS_EMITTED = Counter(
    "chat_events_emitted_total",
    "Realtime events emitted to users' sockets, by event (message:new = messages fanned out)",
    ["event"],
)


class MeteredBroker(MessageBroker):
    """A MessageBroker that times and counts publishes and consumed batches, then delegates
    everything. ``clock`` dates a message's storage, against its acceptance time."""

    def __init__(self, inner: MessageBroker, clock: Clock) -> None:
        self.inner, self._clock = inner, clock

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def publish(self, message: Message) -> None:
        started = time.perf_counter()
        try:
            await self.inner.publish(message)
        except BaseException:
            PUBLISH_FAILURES.inc()
            raise
        finally:
            PUBLISH_SECONDS.observe(time.perf_counter() - started)
        MESSAGES_ACCEPTED.inc()

    async def consume(self, handler: MessageBatchHandler) -> None:
        async def metered(batch: Sequence[Message]) -> None:
            try:
                await handler(batch)
            except Exception:  # a cancelled handler failed nothing: it is redelivered
                MESSAGES_FAILED.inc(len(batch))
                raise
            MESSAGES_STORED.inc(len(batch))
            now = self._clock.now()
            for message in batch:
                CONSUME_SECONDS.observe((now - message.created_at).total_seconds())

        await self.inner.consume(metered)

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        return await self.inner.dead_letters(limit)

    async def replay_dead_letters(self, message_ids: Collection[str] | None) -> list[str]:
        # Counted where they are set aside (chat_adapters.delivery); a replay is a publish.
        return await self.inner.replay_dead_letters(message_ids)

    async def check(self) -> None:
        await self.inner.check()


class MeteredNotifier(RealtimeNotifier):
    """A RealtimeNotifier that counts emitted events by name, then delegates."""

    def __init__(self, inner: RealtimeNotifier) -> None:
        self.inner = inner

    async def emit_to_users(self, user_ids: Iterable[str], event: str, payload: Payload) -> None:
        await self.inner.emit_to_users(user_ids, event, payload)
        EVENTS_EMITTED.labels(event=event).inc()

    async def emit_many(self, notifications: Sequence[Notification]) -> None:
        await self.inner.emit_many(notifications)
        for n in notifications:
            EVENTS_EMITTED.labels(event=n.event).inc()

    async def check(self) -> None:
        await self.inner.check()
