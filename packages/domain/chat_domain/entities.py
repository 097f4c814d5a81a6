"""Entities of the chat domain and the rules that belong to them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from chat_domain.errors import InvalidInput
from chat_domain.text import message_body, name_text

USERNAME_RE = re.compile(r"^[a-z0-9_.\-]{3,32}$")
PASSWORD_MIN, PASSWORD_MAX = 8, 128
DISPLAY_NAME_MAX = 64
ROOM_NAME_MAX = 100
MESSAGE_BODY_MAX = 4000


def normalise_username(raw: str) -> str:
    username = raw.strip().lower()
    if not USERNAME_RE.fullmatch(username):
        raise InvalidInput("username: must be 3..32 characters of a-z 0-9 _ . -")
    return username


def check_password(password: str) -> None:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise InvalidInput(f"password: must be {PASSWORD_MIN}..{PASSWORD_MAX} characters")


def normalise_display_name(raw: str | None, username: str) -> str:
    """The name shown for a user (their username if none is given). That it must not pass
    for another user's username is checked where users are known (``RegisterUser``)."""
    return name_text(raw or "", DISPLAY_NAME_MAX, "display_name") or username


def normalise_room_name(raw: str) -> str:
    name = name_text(raw, ROOM_NAME_MAX, "name")
    if not name:
        raise InvalidInput(f"name: must be 1..{ROOM_NAME_MAX} characters")
    return name


def normalise_body(raw: str) -> str:
    return message_body(raw, MESSAGE_BODY_MAX)


class RoomKind(StrEnum):
    GROUP = "group"
    DIRECT = "direct"


class Role(StrEnum):
    OWNER = "owner"
    MEMBER = "member"


class MessageStatus(StrEnum):
    """Where a message is on its way, as its sender sees it."""

    ACCEPTED = "accepted"  # durably in the broker, no seq yet
    STORED = "stored"  # has a seq
    DELIVERED = "delivered"  # every other member's device acknowledged it
    READ = "read"  # every other member read up to it


class MarkerKind(StrEnum):
    DELIVERED = "delivered"
    READ = "read"


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    display_name: str
    created_at: datetime
    password_hash: str = field(repr=False)
    # When an operator deactivated the account (None: active); it cannot log in then.
    deactivated_at: datetime | None = None
    # Goes up by one at each deactivation, reactivation and password reset: a token
    # carries the generation it was issued in, and one of an older generation is refused.
    session_generation: int = 0


@dataclass(frozen=True, slots=True)
class Room:
    id: str
    name: str
    kind: RoomKind
    created_at: datetime
    last_seq: int = 0
    # For direct rooms: the two user ids, sorted and joined, unique per pair.
    direct_key: str | None = None

    @staticmethod
    def direct_key_for(user_a: str, user_b: str) -> str:
        return ":".join(sorted((user_a, user_b)))


@dataclass(frozen=True, slots=True)
class Membership:
    """A user's place in a room, with its delivery and read markers (never moved backwards)."""

    room_id: str
    user_id: str
    role: Role
    joined_at: datetime
    delivered_seq: int = 0
    read_seq: int = 0

    @property
    def is_owner(self) -> bool:
        return self.role is Role.OWNER

    @classmethod
    def newcomer(cls, room: Room, user_id: str, role: Role, at: datetime) -> Membership:
        """A member joining now: what came before counts as seen, so the unread count starts
        at zero and the senders' delivered/read status of older messages does not regress."""
        return cls(room.id, user_id, role, at, room.last_seq, room.last_seq)


@dataclass(frozen=True, slots=True)
class Member:
    """A membership with the member's username: what a room's member list shows."""

    membership: Membership
    username: str


@dataclass(frozen=True, slots=True)
class Block:
    """``blocker_id`` refuses ``blocked_id``: no direct room opened by them, no being added
    to a room by them, and none of the blocker's presence shown to them."""

    blocker_id: str
    blocked_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class BlockedUser:
    """A block with the blocked user's username: what the blocker's list shows."""

    block: Block
    username: str


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    room_id: str
    sender_id: str
    body: str
    created_at: datetime
    client_msg_id: str | None = None
    seq: int | None = None
    edited_at: datetime | None = None
    deleted: bool = False

    def numbered(self, seq: int) -> Message:
        """The accepted message as stored: with its place in the room."""
        return replace(self, seq=seq)

    def edited(self, body: str, at: datetime) -> Message:
        return replace(self, body=body, edited_at=at)

    def tombstone(self) -> Message:
        # The row stays so that seq keeps no gap; only the content goes.
        return replace(self, body="", deleted=True)


@dataclass(frozen=True, slots=True)
class RoomSummary:
    """A room as its member's room list shows it."""

    room: Room
    last_message: Message | None
    unread_count: int
    last_activity_at: datetime


class Scope(StrEnum):
    """What an API key of the server API may do."""

    USERS_WRITE = "users:write"  # create (upsert) users
    ROOMS_WRITE = "rooms:write"  # create rooms and set their members
    MESSAGES_WRITE = "messages:write"  # post messages as a user or as the system
    MESSAGES_READ = "messages:read"  # read any room's history


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An operator's key for the app's backend. Only a hash of the key is kept: the key
    itself is shown once, when it is created."""

    id: str
    name: str
    scopes: frozenset[Scope]
    key_hash: str = field(repr=False)
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None
