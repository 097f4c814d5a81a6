"""The webhook ports: the durable outbox of webhook events, the table of events recorded
with the changes they describe (the relay's side of it), and the sender that POSTs one."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One event for the subscribers, as they receive it.

    ``id`` is stable across redeliveries of the same fact (a receiver dedupes by it);
    ``timestamp`` is when it happened, in whole seconds since the epoch; ``room_id``
    decides its order: events of one room arrive in the order they were published.
    """

    id: str
    type: str
    room_id: str
    timestamp: int
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """A subscriber: where events are POSTed, and the secret they are signed with."""

    url: str
    secret: str


# Takes one event and returns once it is delivered or set aside; the outbox then drops it.
WebhookEventHandler = Callable[[WebhookEvent], Awaitable[None]]


class WebhookOutbox(ABC):
    """Durable, at-least-once queue of webhook events, between the chat and the dispatcher.

    * ``publish`` returns once the events are held durably (adapters that cannot
      survive the process say so), else raises ``Unavailable``.
    * ``consume`` hands events to the handler, those of one room one at a time in
      publish order; several rooms proceed concurrently, so a receiver stuck on one
      room's event does not hold the others. An event is dropped only after its handler
      returned; if the process stops first it is handed over again (a duplicate id).
    * ``set_aside`` keeps an event that could not be delivered (a dead letter).
    """

    @abstractmethod
    async def start(self) -> None:
        """Connect and declare what the outbox needs."""

    @abstractmethod
    async def close(self) -> None:
        """Stop consuming (events in hand are handed over again later) and disconnect."""

    @abstractmethod
    async def publish(self, events: Sequence[WebhookEvent]) -> None:
        """Hold ``events`` durably, in order; raise ``Unavailable`` if that is not confirmed."""

    @abstractmethod
    async def consume(self, handler: WebhookEventHandler) -> None:
        """Hand events to ``handler`` until ``close`` is called."""

    @abstractmethod
    async def set_aside(self, event: WebhookEvent, url: str, reason: str) -> None:
        """Keep ``event``, undelivered to ``url`` for ``reason``, among the dead letters."""

    async def check(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Raise ``Unavailable`` if the outbox does not answer (readiness probe)."""


@dataclass(frozen=True, slots=True)
class PendingWebhookEvent:
    """An event recorded with its change and not yet relayed to the ``WebhookOutbox``;
    ``position`` orders the recorded events (a later commit, a higher position)."""

    position: int
    event: WebhookEvent


class PendingWebhookEvents(ABC):
    """The relay's side of the events a unit of work recorded (``UnitOfWork.webhook_events``).

    The events are written in the same transaction as the change they describe, so a
    committed change has its event and a rolled-back one has none; the relay moves them
    to the ``WebhookOutbox`` and removes them once it took them.

    * ``lease`` makes the relays of every process take turns: per-room order holds only
      if one relay at a time reads and publishes.
    * ``oldest`` reads committed events by position; ``remove`` drops relayed ones.
    """

    @abstractmethod
    def lease(self) -> AbstractAsyncContextManager[bool]:
        """The relay's turn for the ``async with`` block: True if this caller holds it
        (no other relay, in any process, does until the block ends), False if another
        relay holds it now (the caller then leaves the events to that one)."""

    @abstractmethod
    async def oldest(self, limit: int) -> list[PendingWebhookEvent]:
        """Up to ``limit`` committed events, the lowest positions first."""

    @abstractmethod
    async def remove(self, positions: Collection[int]) -> None:
        """Drop the events at ``positions`` (relayed); positions not there are ignored."""

    @abstractmethod
    async def count(self) -> int:
        """How many events wait to be relayed."""


class WebhookRejected(Exception):
    """The receiver did not take the event: no answer in time, or not a 2xx status."""


class WebhookSender(ABC):
    """POSTs one event to one endpoint, signed, once: retries are the dispatcher's."""

    @abstractmethod
    async def send(self, endpoint: WebhookEndpoint, event: WebhookEvent) -> None:
        """Deliver ``event``; raise ``WebhookRejected`` unless the receiver answered 2xx."""

    async def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections (process shutdown)."""
