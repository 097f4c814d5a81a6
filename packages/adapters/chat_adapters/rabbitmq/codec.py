"""Message <-> bytes on the wire: JSON, datetimes as ISO 8601 strings, every field kept."""

from __future__ import annotations

import zlib
from datetime import datetime
from typing import Any

import orjson

from chat_domain.entities import Message

# Bumped if the shape changes, so a worker can tell an old message from a new one.
VERSION = 1


def encode(message: Message) -> bytes:
    return orjson.dumps(
        {
            "v": VERSION,
            "id": message.id,
            "room_id": message.room_id,
            "sender_id": message.sender_id,
            "body": message.body,
            "created_at": message.created_at.isoformat(),
            "client_msg_id": message.client_msg_id,
            "seq": message.seq,
            "edited_at": message.edited_at.isoformat() if message.edited_at else None,
            "deleted": message.deleted,
        }
    )


def decode(raw: bytes) -> Message:
    data: dict[str, Any] = orjson.loads(raw)
    edited_at = data.get("edited_at")
    return Message(
        id=data["id"],
        room_id=data["room_id"],
        sender_id=data["sender_id"],
        body=data["body"],
        created_at=datetime.fromisoformat(data["created_at"]),
        client_msg_id=data.get("client_msg_id"),
        seq=data.get("seq"),
        edited_at=datetime.fromisoformat(edited_at) if edited_at else None,
        deleted=bool(data.get("deleted", False)),
    )


def partition_of(room_id: str, partitions: int) -> int:
    """Stable across processes and restarts (Python's hash() is salted per process)."""
    return zlib.crc32(room_id.encode()) % partitions
