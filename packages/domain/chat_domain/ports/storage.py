"""Storage ports: repositories reached through one unit of work (one transaction)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from chat_domain.entities import (
    ApiKey,
    Block,
    BlockedUser,
    Member,
    Membership,
    Message,
    Room,
    RoomSummary,
    User,
)
from chat_domain.ports.webhooks import WebhookEvent


class UserRepository(ABC):
    @abstractmethod
    async def add(self, user: User) -> None:
        """Store a new user; raise ``Conflict`` if the username is taken."""

    @abstractmethod
    async def get(self, user_id: str) -> User | None: ...

    @abstractmethod
    async def get_by_username(self, username: str) -> User | None: ...

    @abstractmethod
    async def search(self, prefix: str, limit: int) -> list[User]:
        """Users whose username starts with ``prefix``, by username."""

    @abstractmethod
    async def get_many(self, user_ids: Collection[str]) -> dict[str, User]:
        """The users among ``user_ids``, by id, in one read (unknown ids are absent)."""

    @abstractmethod
    async def deactivate(self, user_id: str, at: datetime) -> User | None:
        """Mark the user deactivated at ``at`` and end their sessions (the session
        generation goes up by one); the user as changed, or None if there is none."""

    @abstractmethod
    async def reactivate(self, user_id: str) -> User | None:
        """Clear the deactivation (the session generation goes up by one); the user as
        changed, or None if there is none."""

    @abstractmethod
    async def change_password(self, user_id: str, password_hash: str) -> User | None:
        """Store a new password hash and end the sessions issued before (the session
        generation goes up by one); the user as changed, or None if there is none."""


@dataclass(frozen=True, slots=True)
class RoomListing:
    """A room as an operator's listing shows it."""

    room: Room
    member_count: int


@dataclass(frozen=True, slots=True)
class SeqBlock:
    """The seqs a room gave a batch of its messages, and who was a member as it did."""

    first: int
    member_ids: list[str]


class RoomRepository(ABC):
    @abstractmethod
    async def add(self, room: Room) -> None:
        """Store a new room; raise ``Conflict`` if its direct pair already has one."""

    @abstractmethod
    async def get(self, room_id: str) -> Room | None: ...

    @abstractmethod
    async def get_direct(self, direct_key: str) -> Room | None: ...

    @abstractmethod
    async def add_member(self, membership: Membership) -> None: ...

    @abstractmethod
    async def remove_member(self, room_id: str, user_id: str) -> None: ...

    @abstractmethod
    async def get_membership(self, room_id: str, user_id: str) -> Membership | None: ...

    @abstractmethod
    async def record_removal(self, room_id: str, user_id: str, at: datetime) -> None:
        """Remember that the owner removed ``user_id`` from the room (recording it again
        keeps one record, with the later time)."""

    @abstractmethod
    async def forget_removal(self, room_id: str, user_id: str) -> None:
        """Drop the record of a removal, if any: the owner took the user back."""

    @abstractmethod
    async def was_removed(self, room_id: str, user_id: str) -> bool:
        """Whether the owner removed ``user_id`` and nobody has taken them back since."""

    @abstractmethod
    async def hand_over(self, room_id: str, from_user_id: str, to_user_id: str) -> bool:
        """Make ``to_user_id`` the owner and ``from_user_id`` a member, if ``from_user_id``
        is the owner and ``to_user_id`` a member now; False otherwise, and then the caller
        must not commit (part of the change may have been written)."""

    @abstractmethod
    async def get_with_membership(
        self, room_id: str, user_id: str
    ) -> tuple[Room, Membership] | None:
        """The room and the user's membership in one read; None if either is missing."""

    @abstractmethod
    async def members(self, room_id: str) -> list[Member]:
        """The room's members with their usernames, by join time."""

    @abstractmethod
    async def member_ids(self, room_id: str) -> list[str]: ...

    @abstractmethod
    async def member_ids_of(self, room_ids: Collection[str]) -> dict[str, list[str]]:
        """The members of several rooms in one read; a room without members is absent."""

    @abstractmethod
    async def summaries_for(self, user_id: str) -> list[RoomSummary]:
        """The user's rooms, most recent activity first, with last message and unread count."""

    @abstractmethod
    async def room_ids_of(self, user_id: str) -> list[str]: ...

    @abstractmethod
    async def contact_ids(self, user_id: str) -> list[str]:
        """Every other user who shares at least one room with ``user_id`` (one read)."""

    @abstractmethod
    async def list_recent(self, limit: int) -> list[RoomListing]:
        """Up to ``limit`` rooms of the whole service, the most recently created first."""

    @abstractmethod
    async def allocate_seqs(self, counts: Mapping[str, int]) -> dict[str, int]:
        """Take each room's next ``counts[room_id]`` seqs and return the first of each, for
        several rooms at once; ``NotFound`` if a room is missing. The numbers are only used
        if the transaction commits; a rollback frees them, so a sequence has no gap.
        Concurrent callers of one room wait."""

    @abstractmethod
    async def allocate_seqs_with_members(self, counts: Mapping[str, int]) -> dict[str, SeqBlock]:
        """``allocate_seqs``, with each room's member ids read in the same statement: all
        that storing a batch needs of its rooms, in one round trip."""

    async def allocate_seq(self, room_id: str, count: int = 1) -> int:
        """``allocate_seqs`` for one room."""
        return (await self.allocate_seqs({room_id: count}))[room_id]

    @abstractmethod
    async def advance_marker(
        self, room_id: str, user_id: str, *, delivered_seq: int | None, read_seq: int | None
    ) -> Membership | None:
        """Move markers forward only (never back); return the membership after the change."""


class BlockRepository(ABC):
    """Who refuses whom: a block is one-way, from the blocker to the blocked user."""

    @abstractmethod
    async def add(self, block: Block) -> None:
        """Store a new block; raise ``Conflict`` if that user already blocks that one."""

    @abstractmethod
    async def get(self, blocker_id: str, blocked_id: str) -> Block | None: ...

    @abstractmethod
    async def remove(self, blocker_id: str, blocked_id: str) -> None:
        """Drop the block, if any."""

    @abstractmethod
    async def blocked_by(self, blocker_id: str) -> list[BlockedUser]:
        """The users ``blocker_id`` blocks, with their usernames, oldest block first."""

    @abstractmethod
    async def involving(self, user_id: str) -> list[Block]:
        """Every block of which ``user_id`` is the blocker or the blocked user (one read)."""


class MessageRepository(ABC):
    @abstractmethod
    async def add(self, message: Message) -> None:
        """Store a message that has its ``seq``."""

    @abstractmethod
    async def add_many(self, messages: Sequence[Message]) -> None:
        """Store several messages that have their ``seq``, in one statement."""

    @abstractmethod
    async def get(self, message_id: str) -> Message | None: ...

    @abstractmethod
    async def check_send(
        self, room_id: str, sender_id: str, message_id: str
    ) -> tuple[bool, Message | None]:
        """What a send asks, in one read: is the sender a member of the room, and is the
        message with this id already stored (a retried send)?"""

    @abstractmethod
    async def erase_before(self, cutoff: datetime, limit: int) -> int:
        """Make up to ``limit`` messages created before ``cutoff`` tombstones (body erased,
        ``deleted``; their seq stays, so history keeps no gap); how many were erased."""

    @abstractmethod
    async def get_many(self, message_ids: Collection[str]) -> dict[str, Message]:
        """The stored messages among ``message_ids``, by id, in one read."""

    @abstractmethod
    async def update(self, message: Message) -> None:
        """Save an edit or a tombstone."""

    @abstractmethod
    async def page(
        self, room_id: str, *, after_seq: int | None, before_seq: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        """Messages in ascending ``seq`` and whether more lie beyond the page.

        With ``after_seq``: the first ``limit`` after it (more = newer ones remain).
        Otherwise: the last ``limit`` before ``before_seq`` (or the newest), (more = older remain).
        """


class ApiKeyRepository(ABC):
    """The server API's keys, found by the hash of the key (the key itself is not kept)."""

    @abstractmethod
    async def add(self, key: ApiKey) -> None:
        """Store a new key; raise ``Conflict`` if its id or hash is taken."""

    @abstractmethod
    async def get_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, revoked or not."""

    @abstractmethod
    async def list_all(self) -> list[ApiKey]:
        """Every key, revoked ones included, the oldest first."""

    @abstractmethod
    async def revoke(self, key_id: str, at: datetime) -> ApiKey | None:
        """Mark the key revoked at ``at`` (a key revoked already keeps its first time);
        the key after the change, or None if there is no such key."""


class WebhookEventRepository(ABC):
    """Webhook events recorded in the transaction of the change they describe (the
    transactional outbox); ``PendingWebhookEvents`` relays them once committed."""

    @abstractmethod
    async def add(self, events: Sequence[WebhookEvent]) -> None:
        """Record ``events``, in order, after every event recorded before them."""


class UnitOfWork(ABC):
    """One transaction over the repositories. Leaving the block without ``commit`` rolls back."""

    users: UserRepository
    rooms: RoomRepository
    messages: MessageRepository
    blocks: BlockRepository
    api_keys: ApiKeyRepository
    webhook_events: WebhookEventRepository

    async def __aenter__(self) -> UnitOfWork:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.rollback()

    @abstractmethod
    async def commit(self) -> None: ...

    @abstractmethod
    async def rollback(self) -> None: ...


def numbered_in_order(
    by_room: Mapping[str, Sequence[Message]], firsts: Mapping[str, int]
) -> list[Message]:
    """Each room's messages numbered from its first seq on, in the order given."""
    return [
        m.numbered(seq)
        for room_id, messages in by_room.items()
        for seq, m in enumerate(messages, start=firsts[room_id])
    ]


class UnitOfWorkFactory(ABC):
    """Opens units of work; the storage adapter's entry point."""

    @abstractmethod
    def __call__(self) -> UnitOfWork: ...

    def reading(self) -> UnitOfWork:
        """A unit that only reads and cannot commit: each read sees what is committed,
        with no transaction opened and closed around the reads, which saves work on the
        hot paths that only check (a send's membership, history, a token's user). Reads
        of one such unit may see different commits, as in a READ COMMITTED transaction.
        """
        return self()

    async def check_send(
        self, room_id: str, sender_id: str, message_id: str
    ) -> tuple[bool, Message | None]:
        """A send's one read, as ``MessageRepository.check_send`` answers it: is the sender a
        member of the room, and is the message with this id already stored (a retry)?

        This default asks a reading unit of work; an adapter may answer on a lighter path,
        since every send asks it.
        """
        async with self.reading() as uow:
            return await uow.messages.check_send(room_id, sender_id, message_id)

    async def store_new_messages(
        self, by_room: Mapping[str, Sequence[Message]]
    ) -> tuple[list[Message], dict[str, list[str]]]:
        """Store messages none of which is stored yet, as a transaction of its own: each
        room's messages take the room's next seqs in the order given. Returns them numbered
        (rooms in the order given, then each room's order) and each room's member ids as
        the seqs were taken.

        All or nothing: ``NotFound`` if a room is missing, ``Conflict`` if a message is
        stored already (or cannot be stored as given), and then nothing has changed.

        This default is a unit of work of two statements; an adapter may do the same in
        fewer round trips (the worker stores every batch this way).
        """
        async with self() as uow:
            blocks = await uow.rooms.allocate_seqs_with_members(
                {room_id: len(messages) for room_id, messages in by_room.items()}
            )
            new = numbered_in_order(by_room, {r: block.first for r, block in blocks.items()})
            await uow.messages.add_many(new)
            await uow.commit()
        return new, {r: block.member_ids for r, block in blocks.items()}

    @abstractmethod
    async def check(self) -> None:
        """Raise ``Unavailable`` if the database does not answer (readiness probe)."""
