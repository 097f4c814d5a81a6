"""How both brokers hand a partition's messages to the consumer: a batch, in order.

A batch goes to the handler whole. If the handler fails it, nobody knows which message
was at fault, so its messages are tried again one at a time, in order; a message that
fails alone is retried in place with a growing pause (holding its partition, so its room
keeps its order) and set aside after ``max_attempts``. The broker acknowledges or
dead-letters by the outcomes this returns.

The consumer metrics that only a broker can see are kept here, for both brokers: batch
sizes, dead letters, redeliveries, and each partition's lag (labelled by partition only,
so their number is bounded by ``CHAT_RABBITMQ_PARTITIONS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge, Histogram

from chat_domain.entities import Message
from chat_domain.ports.broker import MessageBatchHandler

log = logging.getLogger("chat.broker")

DEAD_LETTERED = Counter(
    "chat_broker_dead_lettered_total",
    "Messages set aside after failing every attempt (see `chat dead-letters list`)",
)
REDELIVERED = Counter(
    "chat_broker_redelivered_total",
    "Deliveries of a message the broker had delivered before (a worker died or let go)",
)
BATCH_SIZE = Histogram(
    "chat_broker_batch_size",
    "Messages per batch handed to the consumer (one partition's waiting messages)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
CONSUME_LAG = Gauge(
    "chat_broker_consume_lag_seconds",
    "Per partition: how long before its last handled message was handled it was accepted",
    ["partition"],
)

MAX_RETRY_PAUSE_S = 1.0


class Outcome(enum.Enum):
    HANDLED = "handled"  # acknowledge
    DEAD = "dead"  # failed max_attempts times: dead-letter
    STOPPED = "stopped"  # the broker is stopping: leave unacknowledged, for redelivery


async def deliver_in_order(
    batch: Sequence[Message],
    handler: MessageBatchHandler,
    *,
    earlier_attempts: Sequence[int],
    max_attempts: int,
    retry_backoff: float,
    stopping: asyncio.Event,
    partition: int,
) -> list[Outcome]:
    """Hand ``batch`` (of ``partition``) to ``handler``; one outcome per message, in the
    batch's order.

    ``earlier_attempts`` counts each message's deliveries that already failed (a broker
    that redelivers after a crashed worker knows them).
    """
    BATCH_SIZE.observe(len(batch))
    outcomes = await _deliver(
        batch,
        handler,
        earlier_attempts=earlier_attempts,
        max_attempts=max_attempts,
        retry_backoff=retry_backoff,
        stopping=stopping,
    )
    handled = [m for m, o in zip(batch, outcomes, strict=True) if o is Outcome.HANDLED]
    if handled:
        lag = datetime.now(UTC) - handled[-1].created_at
        CONSUME_LAG.labels(str(partition)).set(max(lag.total_seconds(), 0.0))
    DEAD_LETTERED.inc(outcomes.count(Outcome.DEAD))
    return outcomes


def forget_partition(partition: int) -> None:
    """Drop the lag of a partition this process no longer consumes (a stale gauge lies)."""
    with contextlib.suppress(KeyError):
        CONSUME_LAG.remove(str(partition))


async def _deliver(
    batch: Sequence[Message],
    handler: MessageBatchHandler,
    *,
    earlier_attempts: Sequence[int],
    max_attempts: int,
    retry_backoff: float,
    stopping: asyncio.Event,
) -> list[Outcome]:
    try:
        await handler(batch)
    except Exception as exc:
        if len(batch) == 1:
            first_failure: Exception | None = exc
        else:
            log.warning("a batch of %d failed; handling its messages one at a time", len(batch))
            first_failure = None
    else:
        return [Outcome.HANDLED] * len(batch)
    outcomes: list[Outcome] = []
    for message, earlier in zip(batch, earlier_attempts, strict=True):
        if stopping.is_set():
            outcomes.append(Outcome.STOPPED)
            continue
        failed = earlier + (1 if first_failure is not None else 0)
        if first_failure is not None:
            _log_failure(message, failed, first_failure)
        outcomes.append(
            await _deliver_alone(message, handler, failed, max_attempts, retry_backoff, stopping)
        )
    return outcomes


async def _deliver_alone(
    message: Message,
    handler: MessageBatchHandler,
    failed: int,
    max_attempts: int,
    retry_backoff: float,
    stopping: asyncio.Event,
) -> Outcome:
    while failed < max_attempts:
        if failed:
            pause = min(retry_backoff * 2 ** (failed - 1), MAX_RETRY_PAUSE_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), pause)
            if stopping.is_set():
                return Outcome.STOPPED
        try:
            await handler([message])
        except Exception as exc:
            failed += 1
            _log_failure(message, failed, exc)
        else:
            return Outcome.HANDLED
    log.error("message %s dead-lettered after %d attempts", message.id, failed)
    return Outcome.DEAD


def _log_failure(message: Message, attempt: int, exc: Exception) -> None:
    log.warning("message %s failed (attempt %d)", message.id, attempt, exc_info=exc)
