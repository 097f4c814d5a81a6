"""Which node gets which emits: pure functions over python-socketio's pub/sub messages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Message = dict[str, Any]
Room = tuple[str, str]  # (namespace, room)

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


def per_node(
    emits: Sequence[Message], nodes_of: Mapping[Room, Sequence[str]], skip_node: str
) -> dict[str, list[Message]]:
    """Each node's share of ``emits``, in order: the emits with a room it holds, each
    addressed to those rooms only. ``skip_node`` (the publisher) delivered its own."""
    shares: dict[str, list[Message]] = {}
    for emit in emits:
        namespace, room = emit.get("namespace") or "/", emit["room"]
        rooms_of_node: dict[str, list[str]] = {}
        for name in [room] if isinstance(room, str) else room:
            for node in nodes_of.get((namespace, name), ()):
                if node != skip_node:
                    rooms_of_node.setdefault(node, []).append(name)
        for node, rooms in rooms_of_node.items():
            shares.setdefault(node, []).append({**emit, "room": rooms})
    return shares


def packed(messages: Sequence[Message], host_id: str) -> Message:
    """One pub/sub message for ``messages``: itself if alone, else an ``EMIT_MANY``."""
    if len(messages) == 1:
        return messages[0]
    return {"method": EMIT_MANY, "emits": list(messages), "host_id": host_id}


def unpacked(data: Any) -> list[Message]:
    """A decoded pub/sub message as the stock listener takes it: one dict per emit."""
    if isinstance(data, dict) and data.get("method") == EMIT_MANY:
        return [emit for emit in data.get("emits", ()) if isinstance(emit, dict)]
    return [data]
