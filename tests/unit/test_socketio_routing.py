"""Which node gets which emits (targeted delivery), on python-socketio's message dicts."""

from __future__ import annotations

from typing import Any

from chat_adapters.socketio.routing import EMIT_MANY, packed, per_node, routed_rooms, unpacked


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


def test_each_node_gets_its_emits_in_order_with_its_rooms_only() -> None:
    nodes_of = {
        ("/", "user:a"): ["n1"],
        ("/", "user:b"): ["n1", "n2"],
        ("/", "user:c"): ["me", "n2"],
    }
    emits = [emit(["user:a"], 1), emit(["user:b", "user:c"], 2), emit("user:c", 3)]
    shares = per_node(emits, nodes_of, skip_node="me")
    assert {node: [(e["data"], e["room"]) for e in share] for node, share in shares.items()} == {
        "n1": [([1], ["user:a"]), ([2], ["user:b"])],
        "n2": [([2], ["user:b", "user:c"]), ([3], ["user:c"])],
    }
    assert emits[1]["room"] == ["user:b", "user:c"]  # the caller's emit is left as it was


def test_an_emit_whose_users_sit_nowhere_else_goes_to_no_node() -> None:
    assert per_node([emit(["user:a"])], {("/", "user:a"): ["me"]}, skip_node="me") == {}
    assert per_node([emit(["user:z"])], {}, skip_node="me") == {}


def test_several_emits_travel_as_one_message_and_unpack_as_they_were() -> None:
    one, two = emit("user:a", 1), emit("user:b", 2)
    assert packed([one], "h") is one
    batch = packed([one, two], "h")
    assert batch["method"] == EMIT_MANY and batch["host_id"] == "h"
    assert unpacked(batch) == [one, two]
    assert unpacked(one) == [one]
