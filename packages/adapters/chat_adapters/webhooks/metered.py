"""Prometheus-metered decorators of the webhook ports: what was announced, POSTed, set aside.

Wrappers for the same reasons as chat_adapters.metered: one metric whichever adapter the
container picked, and no prometheus in the domain. A worker's /metrics has them (the
server's in embedded mode, and every server's for the events it announces).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager

from prometheus_client import Counter, Gauge, Histogram

from chat_domain.errors import Unavailable
from chat_domain.ports.webhooks import (
    PendingWebhookEvent,
    PendingWebhookEvents,
    WebhookEndpoint,
    WebhookEvent,
    WebhookEventHandler,
    WebhookOutbox,
    WebhookRejected,
    WebhookSender,
)

WEBHOOKS_ANNOUNCED = Counter(
    "chat_webhook_events_announced_total",
    "Webhook events the outbox took (durably, with RabbitMQ), by type",
    ["type"],
)
WEBHOOK_ANNOUNCE_FAILURES = Counter(
    "chat_webhook_announce_failures_total",
    "Hand-offs to the webhook outbox that failed (a worker retries the batch; a server's "
    "relay retries the recorded events)",
)
WEBHOOK_OUTBOX_PENDING = Gauge(
    "chat_webhook_outbox_pending",
    "Edit, delete and membership webhook events recorded in the database and not yet "
    "relayed to the webhook outbox (read by the relay every interval)",
)
WEBHOOKS_DEAD_LETTERED = Counter(
    "chat_webhook_events_dead_lettered_total",
    "Webhook events set aside for an endpoint after the last attempt failed",
)
WEBHOOK_ATTEMPTS = Counter(
    "chat_webhook_attempts_total",
    "Webhook POSTs, by outcome: delivered (2xx) or refused (other status, timeout, no answer)",
    ["outcome"],
)
WEBHOOK_SECONDS = Histogram(
    "chat_webhook_attempt_seconds",
    "Webhook POST duration, until the answer or the timeout",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class MeteredWebhookOutbox(WebhookOutbox):
    """Counts events announced and dead-lettered, and failed hand-offs; delegates the rest."""

    def __init__(self, inner: WebhookOutbox) -> None:
        self.inner = inner

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def check(self) -> None:
        await self.inner.check()

    async def publish(self, events: Sequence[WebhookEvent]) -> None:
        try:
            await self.inner.publish(events)
        except Unavailable:
            WEBHOOK_ANNOUNCE_FAILURES.inc()
            raise
        for event in events:
            WEBHOOKS_ANNOUNCED.labels(event.type).inc()

    async def consume(self, handler: WebhookEventHandler) -> None:
        await self.inner.consume(handler)

    async def set_aside(self, event: WebhookEvent, url: str, reason: str) -> None:
        await self.inner.set_aside(event, url, reason)
        WEBHOOKS_DEAD_LETTERED.inc()


class MeteredWebhookSender(WebhookSender):
    """Times and counts each POST by outcome; delegates."""

    def __init__(self, inner: WebhookSender) -> None:
        self.inner = inner

    async def send(self, endpoint: WebhookEndpoint, event: WebhookEvent) -> None:
        started = time.perf_counter()
        try:
            await self.inner.send(endpoint, event)
        except WebhookRejected:
            WEBHOOK_ATTEMPTS.labels("refused").inc()
            raise
        finally:
            WEBHOOK_SECONDS.observe(time.perf_counter() - started)
        WEBHOOK_ATTEMPTS.labels("delivered").inc()

    async def close(self) -> None:
        await self.inner.close()


class MeteredPendingWebhookEvents(PendingWebhookEvents):
    """Sets ``chat_webhook_outbox_pending`` from each ``count``; delegates."""

    def __init__(self, inner: PendingWebhookEvents) -> None:
        self.inner = inner

    def lease(self) -> AbstractAsyncContextManager[bool]:
        return self.inner.lease()

    async def oldest(self, limit: int) -> list[PendingWebhookEvent]:
        return await self.inner.oldest(limit)

    async def remove(self, positions: Collection[int]) -> None:
        await self.inner.remove(positions)

    async def count(self) -> int:
        waiting = await self.inner.count()
        WEBHOOK_OUTBOX_PENDING.set(waiting)
        return waiting
