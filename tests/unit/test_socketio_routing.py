"""Which emits are routed by node, and how they travel (targeted delivery)."""

from __future__ import annotations

import json
from typing import Any

from chat_adapters.socketio.routing import EMIT_MANY, batch_head, packed, routed_rooms, unpacked


def emit(room: Any, n: int = 0, **extra: Any) -> dict[str, Any]:
    return {"method": "emit", "event": "e", "data": [n], "namespace": "/", "room": room, **extra}


def test_only_emits_to_user_rooms_without_callback_are_routed() -> None:
    assert routed_rooms(emit(["user:a", "user:b"]), "user:") == ["user:a", "user:b"]
    assert routed_rooms(emit("user:a"), "user:") == ["user:a"]
    assert routed_rooms(emit(None), "user:") is None  # a broadcast
    assert routed_rooms(emit([]), "user:") is None
    assert routed_rooms(emit(["user:a", "some-sid"]), "user:") is None
    assert routed_rooms(emit(["user:a"], callback=["user:a", "/", 1]), "user:") is None
    assert routed_rooms({"method": "disconnect", "sid": "x"}, "user:") is None


def test_several_emits_travel_as_one_message_and_unpack_as_they_were() -> None:
    one, two = emit("user:a", 1), emit("user:b", 2)
    assert packed([one], "h") is one
    batch = packed([one, two], "h")
    assert batch["method"] == EMIT_MANY and batch["host_id"] == "h"
    assert unpacked(batch) == [one, two]
    assert unpacked(one) == [one]


def test_a_batch_built_from_encoded_emits_decodes_as_packed_would() -> None:
    one, two = emit("user:a", 1), emit("user:b", 2)
    built = batch_head("h") + ",".join(json.dumps(e) for e in (one, two)) + "]}"
    assert json.loads(built) == packed([one, two], "h")
