"""The relay of the transactional outbox: recorded webhook events to the ``WebhookOutbox``.

Edits, deletes and membership changes record their webhook events in their own
transaction (``UnitOfWork.webhook_events``); this moves them to the durable outbox, in
the order recorded, and drops them only once the outbox confirmed them. While the outbox
is unreachable they wait in the database; the next pass moves them, with the ids they
were recorded with, so a pass cut between the outbox's confirm and the delete sends them
again as duplicates a receiver drops by id. docs/webhooks.md ("Delivery").
"""

from __future__ import annotations

import asyncio
import logging

from chat_domain.errors import Unavailable
from chat_domain.ports.webhooks import PendingWebhookEvents, WebhookOutbox

log = logging.getLogger("chat.webhooks")


class WebhookRelay:
    """Moves recorded webhook events to the outbox: after a commit that recorded some
    (``nudge``) and every ``interval`` seconds (another process's events, or events left
    while the outbox was down).

    Order: one relay at a time, across processes, holds the store's ``lease`` and
    publishes committed events by position, a batch at a time, each batch only after the
    one before was confirmed. Changes that touch the same rows (an edit, then a delete, of
    one message) commit one after the other, the later recording its event only once the
    earlier committed: their events reach the outbox in that order.
    """

    def __init__(
        self,
        pending: PendingWebhookEvents,
        outbox: WebhookOutbox,
        interval: float = 1.0,
        batch: int = 100,
    ) -> None:
        if interval <= 0 or batch < 1:
            raise ValueError("interval > 0 and batch >= 1")
        self._pending, self._outbox = pending, outbox
        self._interval, self._batch = interval, batch
        self._nudged = asyncio.Event()
        self._stopping = asyncio.Event()
        self._failing = False

    def nudge(self) -> None:
        """Relay now: events were just committed (a pass under way runs once more)."""
        self._nudged.set()

    def stop(self) -> None:
        """End ``run`` (after the pass under way, if any). What is left waits in the
        database for the next relay: a last pass here would, in embedded mode, move rows
        into an in-process outbox about to close, where they would be lost."""
        self._stopping.set()

    async def relay(self) -> int:
        """One pass: move every committed event, oldest first; how many moved (0 if another
        relay holds the lease: it moves them). Raises ``Unavailable`` if the database or
        the outbox is; what was not confirmed stays recorded for the next pass."""
        moved = 0
        async with self._pending.lease() as mine:
            if not mine:
                return 0
            while batch := await self._pending.oldest(self._batch):
                await self._outbox.publish([pending.event for pending in batch])
                await self._pending.remove([pending.position for pending in batch])
                moved += len(batch)
        return moved

    async def run(self) -> None:
        """Relay at each nudge and every ``interval`` until ``stop``; failures are logged
        and retried at the next interval, never raised."""
        loop = asyncio.get_running_loop()
        counted = loop.time()
        while not self._stopping.is_set():
            self._nudged.clear()
            await self._pass()
            if loop.time() - counted >= self._interval:
                counted = loop.time()
                await self._count()
            await self._wait()

    async def _pass(self) -> None:
        try:
            moved = await self.relay()
        except Unavailable as exc:
            if not self._failing:
                log.warning("webhook events wait in the database: %s; retrying", exc)
            self._failing = True
            return
        except Exception:  # the loop must survive, or recorded events would wait forever
            log.exception("webhook relay pass failed; retrying")
            return
        if self._failing:
            log.info("webhook relay resumed: %d waiting events moved to the outbox", moved)
            self._failing = False

    async def _count(self) -> None:
        # Read for the operators' gauge (the store's metered wrapper): what still waits.
        try:
            await self._pending.count()
        except Exception as exc:  # a gauge is not worth stopping the relay for
            log.debug("cannot count waiting webhook events: %r", exc)

    async def _wait(self) -> None:
        nudged = asyncio.ensure_future(self._nudged.wait())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait(
                {nudged, stopping}, timeout=self._interval, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            nudged.cancel()
            stopping.cancel()
