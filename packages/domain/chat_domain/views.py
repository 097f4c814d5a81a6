"""The contract's JSON shapes of entities, shared by REST answers and socket.io events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chat_domain.entities import (
    BlockedUser,
    Member,
    Message,
    MessageStatus,
    Room,
    RoomSummary,
    User,
)

View = dict[str, Any]


def timestamp(at: datetime) -> str:
    """RFC 3339 in UTC with milliseconds: ``2026-11-24T10:00:00.123Z``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def user_view(user: User) -> View:
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "created_at": timestamp(user.created_at),
    }


def block_view(blocked: BlockedUser) -> View:
    return {
        "user_id": blocked.block.blocked_id,
        "username": blocked.username,
        "created_at": timestamp(blocked.block.created_at),
    }


def member_view(member: Member) -> View:
    m = member.membership
    return {
        "user_id": m.user_id,
        "username": member.username,
        "role": m.role.value,
        "joined_at": timestamp(m.joined_at),
    }


def room_view(room: Room, members: list[Member] | None = None) -> View:
    view: View = {
        "id": room.id,
        "name": room.name,
        "kind": room.kind.value,
        "created_at": timestamp(room.created_at),
        "last_seq": room.last_seq,
    }
    if members is not None:
        view["members"] = [member_view(m) for m in members]
    return view


def message_view(message: Message, status: MessageStatus | None = None) -> View:
    view: View = {
        "id": message.id,
        "room_id": message.room_id,
        "seq": message.seq,
        "sender_id": message.sender_id,
        "body": message.body,
        "client_msg_id": message.client_msg_id,
        "created_at": timestamp(message.created_at),
        "edited_at": timestamp(message.edited_at) if message.edited_at else None,
        "deleted": message.deleted,
    }
    if status is not None:
        view["status"] = status.value
    return view


def room_summary_view(summary: RoomSummary) -> View:
    view = room_view(summary.room)
    view["last_message"] = message_view(summary.last_message) if summary.last_message else None
    view["unread_count"] = summary.unread_count
    return view
