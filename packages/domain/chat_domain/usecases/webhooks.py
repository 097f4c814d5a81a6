"""Webhooks: what the chat announces to subscribers, and the dispatcher that delivers it.

The chat never POSTs on its own path: the worker, once a batch is stored, hands events to
the durable ``WebhookOutbox``; the use cases that edit, delete or change members record
theirs in their own transaction, and the ``WebhookRelay`` moves them to the outbox;
the ``WebhookDispatcher`` (in the worker, or in the server in embedded mode) takes them
from there, so a slow or failing receiver holds webhook deliveries only, never a chat
event. docs/webhooks.md describes the events and their delivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from chat_domain.entities import Message
from chat_domain.ports.presence import PresenceTracker
from chat_domain.ports.storage import UnitOfWork
from chat_domain.ports.system import Clock, IdGenerator
from chat_domain.ports.webhooks import (
    WebhookEndpoint,
    WebhookEvent,
    WebhookOutbox,
    WebhookRejected,
    WebhookSender,
)
from chat_domain.views import View, message_view

log = logging.getLogger("chat.webhooks")

WEBHOOK_MESSAGE_NEW = "message.new"
WEBHOOK_MESSAGE_UPDATED = "message.updated"
WEBHOOK_MESSAGE_DELETED = "message.deleted"
WEBHOOK_MESSAGE_UNREAD = "message.unread"
WEBHOOK_MEMBER_ADDED = "member.added"
WEBHOOK_MEMBER_REMOVED = "member.removed"


class WebhookAnnouncements:
    """Turns what happened in the chat into webhook events and hands them to the outbox.

    With no ``endpoints`` it does nothing (no outbox traffic when nobody subscribed).
    Event ids derive from the fact they describe, so a broker redelivery of a stored
    batch announces it again under the same ids and the receiver's dedupe drops it.

    Stored messages are handed to the outbox directly (the worker retries its batch if
    that fails); the request side's events (edits, deletes, membership changes) are
    recorded in the change's unit of work and relayed from there (``WebhookRelay``).

    ``message.unread`` goes, for each new message, to the members other than the sender
    with no socket connected when it was stored (``presence``): whom a mobile app pushes.
    """

    def __init__(
        self,
        outbox: WebhookOutbox,
        presence: PresenceTracker,
        clock: Clock,
        ids: IdGenerator,
        endpoints: Sequence[WebhookEndpoint],
        relay_soon: Callable[[], None] = lambda: None,
    ) -> None:
        self._outbox, self._presence, self._clock, self._ids = outbox, presence, clock, ids
        self.enabled = bool(endpoints)
        self._relay_soon = relay_soon

    async def messages_stored(
        self, messages: Sequence[Message], members: Mapping[str, Sequence[str]]
    ) -> None:
        """Announce newly stored messages (worker side; ``members`` by room). Raises
        ``Unavailable`` if the outbox cannot hold them: the caller's batch is then retried."""
        if not self.enabled or not messages:
            return
        everyone = {uid for m in messages for uid in members.get(m.room_id, ())}
        online = await self._presence.online(everyone) if everyone else set()
        events: list[WebhookEvent] = []
        for message in messages:
            events.append(
                self._event(WEBHOOK_MESSAGE_NEW, message.room_id, message_view(message), message.id)
            )
            offline = sorted(
                uid
                for uid in members.get(message.room_id, ())
                if uid != message.sender_id and uid not in online
            )
            if offline:
                data = {**message_view(message), "user_ids": offline}
                events.append(
                    self._event(WEBHOOK_MESSAGE_UNREAD, message.room_id, data, message.id)
                )
        await self._outbox.publish(events)

    async def message_updated(self, uow: UnitOfWork, message: Message) -> None:
        """Record ``message.updated`` in the edit's unit of work (before its commit)."""
        edited = message.edited_at.isoformat() if message.edited_at else ""
        data = message_view(message)
        await self._record(
            uow, self._event(WEBHOOK_MESSAGE_UPDATED, message.room_id, data, message.id, edited)
        )

    async def message_deleted(
        self, uow: UnitOfWork, room_id: str, message_id: str, seq: int | None
    ) -> None:
        """Record ``message.deleted`` in the delete's unit of work (before its commit)."""
        data = {"room_id": room_id, "id": message_id, "seq": seq}
        await self._record(uow, self._event(WEBHOOK_MESSAGE_DELETED, room_id, data, message_id))

    async def members_added(
        self, uow: UnitOfWork, room_id: str, user_ids: Sequence[str], by: str
    ) -> None:
        """Record ``member.added`` for each of ``user_ids`` in the change's unit of work
        (a new group room's creator and members, a member adding a user, the server API)."""
        if not self.enabled:  # no ids drawn for nothing
            return
        await self._record(
            uow,
            *(
                self._event(
                    WEBHOOK_MEMBER_ADDED,
                    room_id,
                    {"room_id": room_id, "user_id": uid, "by": by},
                    self._ids.new_id(),
                )
                for uid in user_ids
            ),
        )

    async def member_removed(self, uow: UnitOfWork, room_id: str, user_id: str, by: str) -> None:
        """Record ``member.removed`` in the change's unit of work (before its commit)."""
        if not self.enabled:
            return
        data = {"room_id": room_id, "user_id": user_id, "by": by}
        await self._record(
            uow, self._event(WEBHOOK_MEMBER_REMOVED, room_id, data, self._ids.new_id())
        )

    def relay_soon(self) -> None:
        """Call after the commit of a unit that recorded events: the relay moves them to
        the outbox now rather than at its next poll."""
        if self.enabled:
            self._relay_soon()

    async def _record(self, uow: UnitOfWork, *events: WebhookEvent) -> None:
        """Request side: the events are written in the change's own transaction (the
        transactional outbox), so they are committed exactly when the change is, and the
        relay (chat_domain.usecases.webhook_relay) hands them to the outbox, retrying
        while it is unreachable. A committed change is never left unannounced."""
        if self.enabled and events:
            await uow.webhook_events.add(events)

    def _event(self, type_: str, room_id: str, data: View, *fact: str) -> WebhookEvent:
        event_id = "evt_" + self._ids.stable_id("webhook", type_, *fact)
        return WebhookEvent(event_id, type_, room_id, int(self._clock.now().timestamp()), data)


Sleep = Callable[[float], Awaitable[None]]


class WebhookDispatcher:
    """Delivers the outbox's events to every endpoint: at least once, in order per room.

    Each endpoint gets each event; a failed POST (no 2xx in time) is retried after
    ``retry_base`` seconds, doubling up to ``retry_max``, and after ``max_attempts``
    the event is set aside for that endpoint (a dead letter) and the room moves on.
    A room's next event waits for the current one, so order holds per room and per
    endpoint; other rooms are not held (the outbox runs rooms concurrently).
    """

    def __init__(
        self,
        outbox: WebhookOutbox,
        sender: WebhookSender,
        endpoints: Sequence[WebhookEndpoint],
        max_attempts: int = 8,
        retry_base: float = 1.0,
        retry_max: float = 60.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if max_attempts < 1 or retry_base < 0 or retry_max < retry_base:
            raise ValueError("max_attempts >= 1 and 0 <= retry_base <= retry_max")
        self._outbox, self._sender, self._endpoints = outbox, sender, tuple(endpoints)
        self._max_attempts, self._retry_base, self._retry_max = max_attempts, retry_base, retry_max
        self._sleep = sleep

    async def run(self) -> None:
        """Deliver until the outbox is closed (returns at once with no endpoints)."""
        if not self._endpoints:
            return
        log.info("delivering webhooks to %d endpoints", len(self._endpoints))
        try:
            await self._outbox.consume(self.deliver)
        except Exception:
            # Running beside the consumer, nobody awaits it until shutdown: say it now.
            log.exception("webhook dispatcher stopped; events wait in the outbox")
            raise

    async def deliver(self, event: WebhookEvent) -> None:
        """Deliver ``event`` to every endpoint, or set it aside for those that refused."""
        for endpoint in self._endpoints:
            await self._deliver_to(endpoint, event)

    async def _deliver_to(self, endpoint: WebhookEndpoint, event: WebhookEvent) -> None:
        reason = ""
        for attempt in range(1, self._max_attempts + 1):
            try:
                await self._sender.send(endpoint, event)
                return
            except WebhookRejected as exc:
                reason = str(exc)
            if attempt < self._max_attempts:
                await self._sleep(self.backoff(attempt))
        log.warning(
            "webhook %s %s set aside for %s after %d attempts: %s",
            event.type,
            event.id,
            endpoint.url,
            self._max_attempts,
            reason,
        )
        await self._outbox.set_aside(event, endpoint.url, reason)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self._retry_max, self._retry_base * 2 ** (attempt - 1)))


def endpoints_of(urls: Iterable[str], secret: str) -> list[WebhookEndpoint]:
    """The configured subscribers: every URL signed with the one secret."""
    return [WebhookEndpoint(url, secret) for url in urls]
