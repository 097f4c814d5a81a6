"""The message path: send (accept into the broker), store (worker side), history, edit, delete."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chat_domain.entities import Message, MessageStatus, normalise_body
from chat_domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from chat_domain.ports.broker import MessageBroker
from chat_domain.ports.notifier import Notification, RealtimeNotifier
from chat_domain.ports.rate_limit import RateLimiter, RateRule
from chat_domain.ports.storage import UnitOfWorkFactory, numbered_in_order
from chat_domain.ports.system import Clock, IdGenerator
from chat_domain.text import client_token, is_id
from chat_domain.usecases.access import require_member
from chat_domain.usecases.webhooks import WebhookAnnouncements
from chat_domain.views import message_view

MESSAGE_NEW = "message:new"
MESSAGE_UPDATED = "message:updated"
MESSAGE_DELETED = "message:deleted"
CLIENT_MSG_ID_MAX = 64
PAGE_LIMIT_MAX, PAGE_LIMIT_DEFAULT = 200, 50
# The largest seq a client may name: a JavaScript-safe integer, far below what a database
# integer column holds (a cursor past int64 used to reach the database and fail there).
SEQ_MAX = 2**53 - 1


@dataclass(frozen=True, slots=True)
class SendResult:
    message: Message
    status: MessageStatus


class SendMessage:
    """Accept a message: check it, hand it durably to the broker, answer before it is stored.

    A retry with the same ``client_msg_id`` (same sender, same room) gets the same
    message id, derived from those three, so it is the same on every node; the
    store step keeps one copy per id however many times it is published.

    With a ``limiter``, each sender has one budget of sends (``rate_rule``) whichever
    way they send (REST or socket.io); over it the call raises ``RateLimited``.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        broker: MessageBroker,
        clock: Clock,
        ids: IdGenerator,
        limiter: RateLimiter | None = None,
        rate_rule: RateRule | None = None,
    ) -> None:
        self._uow, self._broker, self._clock, self._ids = uow, broker, clock, ids
        self._limiter, self._rate_rule = limiter, rate_rule

    async def __call__(
        self, sender_id: str, room_id: str, body: str, client_msg_id: str | None = None
    ) -> SendResult:
        body = normalise_body(body)
        if client_msg_id is not None:
            client_token(client_msg_id, CLIENT_MSG_ID_MAX, "client_msg_id")
        if not is_id(room_id):
            raise NotFound("room not found")
        if self._limiter is not None and self._rate_rule is not None:
            await self._limiter.acquire(sender_id, self._rate_rule)
        message_id = (
            self._ids.stable_id("message", room_id, sender_id, client_msg_id)
            if client_msg_id
            else self._ids.new_id()
        )
        # A non-member learns nothing: not that the room exists, nor a message in it.
        member, stored = await self._uow.check_send(room_id, sender_id, message_id)
        if not member:
            raise NotFound("room not found")
        if stored is not None:
            return SendResult(stored, MessageStatus.STORED)
        message = Message(message_id, room_id, sender_id, body, self._clock.now(), client_msg_id)
        await self._broker.publish(message)  # raises Unavailable: nothing was accepted
        return SendResult(message, MessageStatus.ACCEPTED)


_ById = dict[str, Message]
_MembersByRoom = dict[str, list[str]]


class StoreMessages:
    """Worker side: give accepted messages their rooms' next ``seq``s, store them, fan them out.

    A batch (messages of several rooms, each room's in publish order) is one transaction
    of a few statements whatever its size: the store's cost is per transaction far more
    than per message, so a busy worker stores what arrived meanwhile in one go.

    Safe to run again for the same messages (a broker redelivery after a crash): each is
    stored once, and emitted again so that no member misses it (clients dedupe by id).
    Returns the stored messages in the order given.

    With ``webhooks``, the stored batch is then announced to webhook subscribers (handed
    to their outbox, never POSTed here); if the outbox cannot take it, this raises and
    the broker hands the batch over again (stored once, emitted and announced again).
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        notifier: RealtimeNotifier,
        webhooks: WebhookAnnouncements | None = None,
    ) -> None:
        self._uow, self._notifier, self._webhooks = uow, notifier, webhooks

    async def __call__(self, accepted: Sequence[Message]) -> list[Message]:
        batch = list({m.id: m for m in accepted}.values())  # one id twice: stored once
        try:
            stored, members = await self._store_all(batch)
        except Conflict:  # some message is stored already (a redelivery): rolled back
            stored, members = await self._store_unstored(batch)
        await self._notifier.emit_many(
            [
                Notification(
                    tuple(members.get(m.room_id, [])), MESSAGE_NEW, message_view(stored[m.id])
                )
                for m in batch
            ]
        )
        if self._webhooks is not None:
            await self._webhooks.messages_stored([stored[m.id] for m in batch], members)
        return [stored[m.id] for m in accepted]

    async def _store_all(self, batch: list[Message]) -> tuple[_ById, _MembersByRoom]:
        """The common case, a batch none of which is stored yet, numbered and stored without
        looking for stored copies first. Storing a message twice breaks its primary key,
        raising ``Conflict``, and nothing is stored, seqs included."""
        new, members = await self._uow.store_new_messages(_by_room(batch))
        return {m.id: m for m in new}, members

    async def _store_unstored(self, batch: list[Message]) -> tuple[_ById, _MembersByRoom]:
        """Read which messages are stored first, number and store only the others."""
        async with self._uow() as uow:
            stored = await uow.messages.get_many([m.id for m in batch])
            by_room = _by_room([m for m in batch if m.id not in stored])
            firsts = await uow.rooms.allocate_seqs({r: len(ms) for r, ms in by_room.items()})
            new = numbered_in_order(by_room, firsts)
            await uow.messages.add_many(new)
            stored.update((m.id, m) for m in new)
            members = await uow.rooms.member_ids_of({m.room_id for m in batch})
            await uow.commit()
        return stored, members


def _by_room(messages: list[Message]) -> dict[str, list[Message]]:
    """Messages grouped by room, each room's in the order given."""
    by_room: dict[str, list[Message]] = {}
    for message in messages:
        by_room.setdefault(message.room_id, []).append(message)
    return by_room


@dataclass(frozen=True, slots=True)
class HistoryPage:
    messages: list[Message]
    has_more: bool
    reader_id: str
    # The lowest markers among the reader's fellow members (None: nobody else is there).
    others_delivered_seq: int | None
    others_read_seq: int | None

    def status_of(self, message: Message) -> MessageStatus | None:
        """Where the reader's own message is on its way; None for other people's messages."""
        if message.sender_id != self.reader_id or message.seq is None:
            return None
        if self.others_read_seq is not None and message.seq <= self.others_read_seq:
            return MessageStatus.READ
        if self.others_delivered_seq is not None and message.seq <= self.others_delivered_seq:
            return MessageStatus.DELIVERED
        return MessageStatus.STORED


def check_page_limit(limit: int | None) -> int:
    if limit is None:
        return PAGE_LIMIT_DEFAULT
    if not 1 <= limit <= PAGE_LIMIT_MAX:
        raise InvalidInput(f"limit: must be 1..{PAGE_LIMIT_MAX}")
    return limit


class ListHistory:
    """A page of a room's messages in ascending ``seq``, for a member."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(
        self,
        user_id: str,
        room_id: str,
        *,
        after_seq: int | None = None,
        before_seq: int | None = None,
        limit: int | None = None,
    ) -> HistoryPage:
        page_size = check_page_limit(limit)
        for name, value in (("after_seq", after_seq), ("before_seq", before_seq)):
            if value is not None and not 0 <= value <= SEQ_MAX:
                raise InvalidInput(f"{name}: must be 0..{SEQ_MAX}")
        async with self._uow.reading() as uow:
            await require_member(uow, room_id, user_id)
            messages, has_more = await uow.messages.page(
                room_id, after_seq=after_seq, before_seq=before_seq, limit=page_size
            )
            others = [m.membership for m in await uow.rooms.members(room_id)]
        others = [m for m in others if m.user_id != user_id]
        return HistoryPage(
            messages,
            has_more,
            user_id,
            min((m.delivered_seq for m in others), default=None),
            min((m.read_seq for m in others), default=None),
        )


class EditMessage:
    """Only the sender edits; the new body follows the same rules as a new one.

    An edit reaches every member like a new message, so with a ``limiter`` it is charged
    to the sender's budget of sends (``rate_rule``): editing one message over and over
    cannot flood a room that sending could not.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        notifier: RealtimeNotifier,
        clock: Clock,
        limiter: RateLimiter | None = None,
        rate_rule: RateRule | None = None,
        webhooks: WebhookAnnouncements | None = None,
    ) -> None:
        self._uow, self._notifier, self._clock = uow, notifier, clock
        self._limiter, self._rate_rule = limiter, rate_rule
        self._webhooks = webhooks

    async def __call__(self, user_id: str, room_id: str, message_id: str, body: str) -> Message:
        body = normalise_body(body)
        if self._limiter is not None and self._rate_rule is not None:
            await self._limiter.acquire(user_id, self._rate_rule)
        async with self._uow() as uow:
            await require_member(uow, room_id, user_id)
            message = await uow.messages.get(message_id) if is_id(message_id) else None
            if message is None or message.room_id != room_id:
                raise NotFound("message not found")
            if message.sender_id != user_id:
                raise Forbidden("only the sender may edit a message")
            if message.deleted:
                # The tombstone is still in history, so "not found" would contradict it.
                raise Conflict("message was deleted: a tombstone cannot be edited")
            message = message.edited(body, self._clock.now())
            await uow.messages.update(message)
            member_ids = await uow.rooms.member_ids(room_id)
            if self._webhooks is not None:  # with the edit, in its transaction
                await self._webhooks.message_updated(uow, message)
            await uow.commit()
        await self._notifier.emit_to_users(member_ids, MESSAGE_UPDATED, message_view(message))
        if self._webhooks is not None:
            self._webhooks.relay_soon()
        return message


class DeleteMessage:
    """The sender or the room's owner deletes; a tombstone keeps the ``seq``."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        notifier: RealtimeNotifier,
        webhooks: WebhookAnnouncements | None = None,
    ) -> None:
        self._uow, self._notifier, self._webhooks = uow, notifier, webhooks

    async def __call__(self, user_id: str, room_id: str, message_id: str) -> None:
        async with self._uow() as uow:
            _, membership = await require_member(uow, room_id, user_id)
            message = await uow.messages.get(message_id) if is_id(message_id) else None
            if message is None or message.room_id != room_id:
                raise NotFound("message not found")
            if message.sender_id != user_id and not membership.is_owner:
                raise Forbidden("only the sender or the room's owner may delete a message")
            if message.deleted:
                return  # deleting twice changes nothing
            await uow.messages.update(message.tombstone())
            member_ids = await uow.rooms.member_ids(room_id)
            if self._webhooks is not None:  # with the delete, in its transaction
                await self._webhooks.message_deleted(uow, room_id, message_id, message.seq)
            await uow.commit()
        await self._notifier.emit_to_users(
            member_ids, MESSAGE_DELETED, {"room_id": room_id, "id": message_id, "seq": message.seq}
        )
        if self._webhooks is not None:
            self._webhooks.relay_soon()
