"""How both brokers hand a partition's messages to the consumer: a batch, in order.

A batch goes to the handler whole. If the handler fails it, nobody knows which message
was at fault, so its messages are tried again one at a time, in order; a message that
fails alone is retried in place with a growing pause (holding its partition, so its room
keeps its order) and set aside after ``max_attempts``. The broker acknowledges or
dead-letters by the outcomes this returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Sequence

from chat_domain.entities import Message
from chat_domain.ports.broker import MessageBatchHandler

log = logging.getLogger("chat.broker")

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
) -> list[Outcome]:
    """Hand ``batch`` to ``handler``; one outcome per message, in the batch's order.

    ``earlier_attempts`` counts each message's deliveries that already failed (a broker
    that redelivers after a crashed worker knows them).
    """
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
