"""Which emits can be routed, and how they travel: pure functions over python-socketio's
pub/sub messages (the routing itself runs in Redis, see ``room_directory``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

Message = dict[str, Any]

EMIT_MANY = "chat_emit_many"  # our pub/sub method: several emits in one message


def routed_rooms(message: Message, prefix: str) -> list[str] | None:
    """The rooms of an emit the directory can route (all named ``{prefix}...``), else None.

    Anything else (a broadcast, an emit to a socket id or another room, one with an ack
    callback, a disconnect or room change for a remote socket) goes to every node.
    """
    if message.get("method") != "emit" or message.get("callback") is not None:
        return None
    room = message.get("room")
    rooms = [room] if isinstance(room, str) else room
    if not isinstance(rooms, list) or not rooms:
        return None
    if all(isinstance(r, str) and r.startswith(prefix) for r in rooms):
        return rooms
    return None


def packed(messages: Sequence[Message], host_id: str) -> Message:
    """One pub/sub message for ``messages``: itself if alone, else an ``EMIT_MANY``."""
    if len(messages) == 1:
        return messages[0]
    return {"method": EMIT_MANY, "emits": list(messages), "host_id": host_id}


def batch_head(host_id: str) -> str:
    """The JSON of ``packed``'s batch up to its emits, for a batch built from encoded
    emits: the head, the emits joined by commas, then ``]}``."""
    return f'{{"method":"{EMIT_MANY}","host_id":{json.dumps(host_id)},"emits":['


def unpacked(data: Any) -> list[Message]:
    """A decoded pub/sub message as the stock listener takes it: one dict per emit."""
    if isinstance(data, dict) and data.get("method") == EMIT_MANY:
        return [emit for emit in data.get("emits", ()) if isinstance(emit, dict)]
    return [data]
