"""What the app's backend does through the server API: the rooms and messages of its
users, with its own authority (an API key's scopes) rather than a member's.

The message path is the users' own: a post is accepted only once the broker confirmed
it, and a retry with the same ``client_msg_id`` is the same message.
"""

from __future__ import annotations

from collections.abc import Sequence

from chat_domain.entities import (
    Membership,
    Message,
    MessageStatus,
    Role,
    RoomKind,
    User,
    normalise_body,
)
from chat_domain.errors import Conflict, Forbidden, InvalidInput, LimitExceeded, NotFound
from chat_domain.ports.broker import MessageBroker
from chat_domain.ports.notifier import RealtimeNotifier
from chat_domain.ports.storage import UnitOfWorkFactory
from chat_domain.ports.system import Clock, IdGenerator
from chat_domain.text import client_token, is_id
from chat_domain.usecases.messages import (
    CLIENT_MSG_ID_MAX,
    SEQ_MAX,
    SendMessage,
    SendResult,
    check_page_limit,
)
from chat_domain.usecases.rooms import (
    MEMBER_ADDED,
    MEMBER_REMOVED,
    CreateGroupRoom,
    RoomDetails,
)
from chat_domain.usecases.webhooks import WebhookAnnouncements

# The sender of the app's own messages (announcements, notices): a user nobody logs in as,
# made on first use, member of no room.
SYSTEM_USER_ID = "system"
SYSTEM_USERNAMES = ("system", "system-messages", "system-chat-server")
SYSTEM_DISPLAY_NAME = "System"
# Who made a change through the server API, as webhooks name it ("by"): the app's backend.
SERVER_API_ACTOR = "server-api"
NO_PASSWORD = "!system"


class CreateServerRoom:
    """A group room the app creates for its users: ``owner_id`` owns it (the same rules as
    when that user creates it, blocks and limits included)."""

    def __init__(self, uow: UnitOfWorkFactory, create_group_room: CreateGroupRoom) -> None:
        self._uow, self._create = uow, create_group_room

    async def __call__(self, owner_id: str, name: str, member_ids: Sequence[str]) -> RoomDetails:
        async with self._uow.reading() as uow:
            if not is_id(owner_id) or await uow.users.get(owner_id) is None:
                raise InvalidInput("owner_id: unknown user")
        return await self._create(owner_id, name, member_ids)


class SetRoomMembers:
    """Make a group room's members exactly ``member_ids`` (which must include its owner):
    the missing are added (also those the owner had removed), the others removed. Each
    added or removed user and the room's members hear it, as when a member does it."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        notifier: RealtimeNotifier,
        clock: Clock,
        max_members: int = 1000,
        webhooks: WebhookAnnouncements | None = None,
    ) -> None:
        self._uow, self._notifier, self._clock = uow, notifier, clock
        self._max_members, self._webhooks = max_members, webhooks

    async def __call__(self, room_id: str, member_ids: Sequence[str]) -> RoomDetails:
        wanted = list(dict.fromkeys(member_ids))
        if len(wanted) > self._max_members:
            raise LimitExceeded(f"member_ids: a room has at most {self._max_members} members")
        if not is_id(room_id):
            raise NotFound("room not found")
        async with self._uow() as uow:
            room = await uow.rooms.get(room_id)
            if room is None:
                raise NotFound("room not found")
            if room.kind is RoomKind.DIRECT:
                raise Forbidden("a direct room has exactly its two users")
            members = await uow.rooms.members(room_id)
            current = {m.membership.user_id for m in members}
            owners = [m.membership.user_id for m in members if m.membership.is_owner]
            if owners and owners[0] not in wanted:
                raise InvalidInput("member_ids: must include the room's owner")
            added = [uid for uid in wanted if uid not in current]
            removed = [uid for uid in current if uid not in wanted]
            for uid in added:
                if not is_id(uid) or await uow.users.get(uid) is None:
                    raise InvalidInput("member_ids: unknown user")
            now = self._clock.now()
            for uid in added:
                await uow.rooms.add_member(Membership.newcomer(room, uid, Role.MEMBER, now))
                await uow.rooms.forget_removal(room_id, uid)
            for uid in removed:
                await uow.rooms.remove_member(room_id, uid)
            after = await uow.rooms.members(room_id)
            if self._webhooks is not None:  # "by" the app's backend, through the server API
                if added:
                    await self._webhooks.members_added(uow, room_id, added, SERVER_API_ACTOR)
                for uid in removed:
                    await self._webhooks.member_removed(uow, room_id, uid, SERVER_API_ACTOR)
            await uow.commit()
        # The members after the change hear who joined; the members before it (the removed
        # among them, as when the owner removes one) hear who left, and nothing more.
        for uid in added:
            await self._notifier.emit_to_users(
                wanted, MEMBER_ADDED, {"room_id": room_id, "user_id": uid}
            )
        for uid in removed:
            await self._notifier.emit_to_users(
                sorted(current), MEMBER_REMOVED, {"room_id": room_id, "user_id": uid}
            )
        if self._webhooks is not None:
            self._webhooks.relay_soon()
        return RoomDetails(room, after)


class PostServerMessage:
    """Post into a room as one of its members (``sender_id``: the user's own send, their
    send budget included) or as the system sender (``sender_id`` None: into any room,
    the sender being the ``system`` user, who is no member)."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        broker: MessageBroker,
        clock: Clock,
        ids: IdGenerator,
        send_message: SendMessage,
    ) -> None:
        self._uow, self._broker, self._clock, self._ids = uow, broker, clock, ids
        self._send = send_message
        self._system_ready = False

    async def __call__(
        self, room_id: str, body: str, client_msg_id: str | None, sender_id: str | None
    ) -> SendResult:
        if sender_id is not None:
            if not is_id(sender_id):  # no user has it: storage is not asked
                raise InvalidInput("sender_id: unknown user")
            return await self._send(sender_id, room_id, body, client_msg_id)
        body = normalise_body(body)
        if client_msg_id is not None:
            client_token(client_msg_id, CLIENT_MSG_ID_MAX, "client_msg_id")
        if not is_id(room_id):
            raise NotFound("room not found")
        await self._ensure_system_user()
        message_id = (
            self._ids.stable_id("message", room_id, SYSTEM_USER_ID, client_msg_id)
            if client_msg_id
            else self._ids.new_id()
        )
        async with self._uow.reading() as uow:
            if await uow.rooms.get(room_id) is None:
                raise NotFound("room not found")
            stored = await uow.messages.get(message_id)
        if stored is not None:
            return SendResult(stored, MessageStatus.STORED)
        message = Message(
            message_id, room_id, SYSTEM_USER_ID, body, self._clock.now(), client_msg_id
        )
        await self._broker.publish(message)  # raises Unavailable: nothing was accepted
        return SendResult(message, MessageStatus.ACCEPTED)

    async def _ensure_system_user(self) -> None:
        if self._system_ready:
            return
        for username in SYSTEM_USERNAMES:
            try:
                async with self._uow() as uow:
                    if await uow.users.get(SYSTEM_USER_ID) is not None:
                        break
                    if await uow.users.get_by_username(username) is not None:
                        continue
                    user = User(
                        SYSTEM_USER_ID,
                        username,
                        SYSTEM_DISPLAY_NAME,
                        self._clock.now(),
                        NO_PASSWORD,
                    )
                    await uow.users.add(user)
                    await uow.commit()
                    break
            except Conflict:  # another node made it (or took the name) just now: look again
                continue
        async with self._uow.reading() as uow:
            if await uow.users.get(SYSTEM_USER_ID) is None:
                raise Conflict("no free username for the system sender")
        self._system_ready = True


class ReadRoomHistory:
    """A page of any room's messages in ascending ``seq`` (``ListHistory``'s paging), and
    whether more lie beyond it."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(
        self,
        room_id: str,
        *,
        after_seq: int | None = None,
        before_seq: int | None = None,
        limit: int | None = None,
    ) -> tuple[list[Message], bool]:
        page_size = check_page_limit(limit)
        for name, value in (("after_seq", after_seq), ("before_seq", before_seq)):
            if value is not None and not 0 <= value <= SEQ_MAX:
                raise InvalidInput(f"{name}: must be 0..{SEQ_MAX}")
        if not is_id(room_id):
            raise NotFound("room not found")
        async with self._uow.reading() as uow:
            if await uow.rooms.get(room_id) is None:
                raise NotFound("room not found")
            return await uow.messages.page(
                room_id, after_seq=after_seq, before_seq=before_seq, limit=page_size
            )
