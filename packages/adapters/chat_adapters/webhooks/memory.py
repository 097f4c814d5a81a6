"""The embedded webhook outbox: in-process, per-room order, the same rules as RabbitMQ's."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from chat_adapters.webhooks.lanes import RoomLanes
from chat_domain.errors import Unavailable
from chat_domain.ports.webhooks import WebhookEvent, WebhookEventHandler, WebhookOutbox

log = logging.getLogger(__name__)


class InMemoryWebhookOutbox(WebhookOutbox):
    """Events wait in this process until the dispatcher delivered them.

    Nothing survives the process (like the embedded broker): events not yet delivered
    when it stops are lost, and logged; a consumer that stops in the process leaves
    them to the next. Dead letters are kept in ``dead_letters``.
    """

    def __init__(self) -> None:
        self._waiting: list[WebhookEvent] = []  # published before anyone consumes
        self._lanes: RoomLanes[WebhookEvent] | None = None
        self._stopping = asyncio.Event()
        self._closed = False
        self.dead_letters: list[tuple[WebhookEvent, str, str]] = []

    async def start(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        self._closed = True
        self._stopping.set()
        if self._waiting:
            log.error("closing with %d webhook events undelivered", len(self._waiting))

    async def check(self) -> None:
        if self._closed:
            raise Unavailable("webhook outbox closed")

    async def publish(self, events: Sequence[WebhookEvent]) -> None:
        await self.check()
        for event in events:
            if self._lanes is None:
                self._waiting.append(event)
            else:
                self._lanes.put(event.room_id, event)

    async def consume(self, handler: WebhookEventHandler) -> None:
        if self._closed:
            return
        lanes = self._lanes = RoomLanes(handler)
        waiting, self._waiting = self._waiting, []
        for event in waiting:
            lanes.put(event.room_id, event)
        try:
            await self._stopping.wait()
        finally:
            self._lanes = None
            # Undelivered events wait for the next consumer, ahead of later ones.
            self._waiting[:0] = await lanes.close()

    async def set_aside(self, event: WebhookEvent, url: str, reason: str) -> None:
        self.dead_letters.append((event, url, reason))
