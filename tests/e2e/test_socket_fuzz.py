"""Fuzz every client socket.io event with random and malformed payloads.

A seeded generator (reproducible: the seed is in the failure message) makes wrong
types, missing fields, huge strings, nested junk, None, lists, several arguments,
and near-valid payloads with one field spoiled. Whatever comes in:

- every call is acknowledged, ``{"ok": true, ...}`` or ``{"ok": false, "error": {...}}``;
- the fuzzing socket stays connected, and so does another user's;
- the other user still gets a message sent afterwards;
- nothing a refused call carried is stored (the room's history holds exactly the
  messages whose send was acknowledged ``ok``);
- text the domain refuses (tests/support/text_corpus.py) is refused with a validation
  error in every string field, and the text it accepts is stored as sent.

The module runs on SQLite and on PostgreSQL storage, which differ in the text they hold.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import STORAGES, served_on
from tests.support.clients import Api, Socket
from tests.support.processes import ChatProcess
from tests.support.text_corpus import ACCEPTED_BODIES, REFUSED_EVERYWHERE, REFUSED_IN_NAMES_ONLY

UNLIMITED_FAN_OUT = {"CHAT_RATE_TYPING_PER_SECOND": "0", "CHAT_RATE_RECEIPT_PER_SECOND": "0"}
SEED = 20261124
REFUSED_TEXT = [*REFUSED_EVERYWHERE.values(), *REFUSED_IN_NAMES_ONLY.values()]
TRICKY_TEXT = [*REFUSED_TEXT, *(b for b in ACCEPTED_BODIES.values() if len(b) < 100)]
CASES_PER_EVENT = 160
EVENTS = ("message:send", "delivered", "read", "typing", "sync")
FIELDS = {
    "message:send": ("room_id", "body", "client_msg_id"),
    "delivered": ("room_id", "seq"),
    "read": ("room_id", "seq"),
    "typing": ("room_id", "is_typing"),
    "sync": ("room_id", "after_seq", "limit"),
}


class Junk:
    """Random JSON values, from harmless to hostile."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def text(self) -> str:
        kind = self.rng.randrange(6)
        if kind == 0:
            return ""
        if kind == 1:
            return " \n\t "
        if kind == 2:  # big, but under the socket.io packet limit (128 KB by default)
            return self.rng.choice(string.ascii_letters) * self.rng.choice([4001, 8001, 30_000])
        if kind == 3:
            return "".join(
                chr(self.rng.randrange(0x20, 0x2FFF)) for _ in range(self.rng.randrange(1, 40))
            )
        if kind == 4:
            return self.rng.choice(
                ["' OR 1=1 --", "<script>alert(1)</script>", "../../etc/passwd", *TRICKY_TEXT]
            )
        return "".join(self.rng.choices(string.printable, k=self.rng.randrange(1, 80)))

    def number(self) -> Any:
        return self.rng.choice(
            [
                0,
                -1,
                1,
                2**31,
                2**53,
                -(2**63),
                2**63 - 1,
                2**64,
                2**70,
                0.5,
                -0.0,
                1e308,
                self.rng.randrange(-(10**6), 10**6),
            ]
        )

    def value(self, depth: int = 0) -> Any:
        kind = self.rng.randrange(8 if depth < 3 else 6)
        if kind == 0:
            return None
        if kind == 1:
            return self.rng.choice([True, False])
        if kind == 2:
            return self.number()
        if kind in (3, 4, 5):
            return self.text()
        if kind == 6:
            return [self.value(depth + 1) for _ in range(self.rng.randrange(0, 5))]
        return {self.text()[:20]: self.value(depth + 1) for _ in range(self.rng.randrange(0, 5))}


@pytest.fixture(scope="module", params=STORAGES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChatProcess]:
    # The fuzz is about validation: the per-user limits on typing and receipts (tested in
    # test_limits.py) would otherwise answer most of it with rate_limited.
    yield from served_on(request.param, tmp_path_factory, UNLIMITED_FAN_OUT)


def valid(event: str, room_id: str, n: int) -> dict[str, Any]:
    return {
        "message:send": {"room_id": room_id, "body": f"fuzz ok {n}", "client_msg_id": f"fz-{n}"},
        "delivered": {"room_id": room_id, "seq": 1},
        "read": {"room_id": room_id, "seq": 1},
        "typing": {"room_id": room_id, "is_typing": True},
        "sync": {"room_id": room_id, "after_seq": 0, "limit": 5},
    }[event]


def payload(event: str, room_id: str, n: int, junk: Junk) -> tuple[Any, ...]:
    """The arguments of one emit: mostly one payload, sometimes none or several."""
    rng = junk.rng
    shape = rng.randrange(10)
    if shape == 0:
        return ()  # no argument at all
    if shape == 1:
        return (junk.value(), junk.value())  # two arguments
    if shape == 2:
        return (junk.value(),)  # anything: None, a list, a string, a number ...
    data = valid(event, room_id, n)
    if shape == 3:
        data.pop(rng.choice(FIELDS[event]), None)  # a missing field
    elif shape in (4, 5, 6):
        data[rng.choice(FIELDS[event])] = junk.value()  # one spoiled field
    elif shape == 7:
        data[junk.text()[:30]] = junk.value()  # an unknown field: ignored
        data["room_id"] = rng.choice([room_id, junk.text()[:70]])
    elif shape == 8:
        data = {k: junk.value() for k in FIELDS[event]}  # every field junk
    return (data,)


def well_formed(ack: Any) -> bool:
    if not isinstance(ack, dict) or not isinstance(ack.get("ok"), bool):
        return False
    if ack["ok"]:
        return True
    error = ack.get("error")
    return (
        set(ack) == {"ok", "error"}
        and isinstance(error, dict)
        and isinstance(error.get("code"), str)
        and isinstance(error.get("message"), str)
        and "Traceback" not in error["message"]
    )


async def emit_and_wait(s: Socket, event: str, args: tuple[Any, ...]) -> Any:
    # python-socketio sends a tuple as several arguments; () is an event with no data.
    data: Any = args if len(args) != 1 else args[0]
    if len(args) == 0:
        return await s.client.call(event, timeout=10)
    return await s.client.call(event, data, timeout=10)


async def test_fuzz_every_client_event(api: Api, open_socket) -> None:  # type: ignore[no-untyped-def]
    alice, bob = await api.signup("fuzzer"), await api.signup("bystander")
    room = await api.create_room(alice, bob, name="fuzz")
    a, b = await open_socket(alice), await open_socket(bob)
    seed_message = await api.send(alice, room["id"], "before the fuzz")
    await b.wait_for("message:new", lambda m: m["body"] == "before the fuzz")

    rng = random.Random(SEED)
    junk = Junk(rng)
    accepted: set[str] = {seed_message.json()["message"]["id"]}
    cases = 0
    for n in range(CASES_PER_EVENT):
        for event in EVENTS:
            args = payload(event, room["id"], n, junk)
            ack = await emit_and_wait(a, event, args)
            cases += 1
            assert well_formed(ack), f"seed {SEED}, case {n}, {event}{args!r:.300}: {ack!r:.300}"
            if event == "message:send" and ack["ok"]:
                accepted.add(ack["message"]["id"])
            assert a.client.connected, f"seed {SEED}, case {n}: the fuzzing socket was dropped"
    # Edge values for every numeric field, not left to chance: past int64, floats, bools.
    edges = [2**63 - 1, 2**63, 2**64 - 1, -1, 1.5, "1", True, None]
    for event in EVENTS:
        for field in ("seq", "after_seq", "limit"):
            if field not in FIELDS[event]:
                continue
            for value in edges:
                ack = await emit_and_wait(
                    a, event, ({**valid(event, room["id"], 0), field: value},)
                )
                cases += 1
                assert well_formed(ack), f"{event} {field}={value!r}: {ack!r:.300}"
                assert ack["ok"] or ack["error"]["code"] == "validation_error", (
                    event,
                    field,
                    value,
                    ack,
                )
    assert cases == CASES_PER_EVENT * len(EVENTS) + 3 * 8 + 8

    # The text corpus in every string field of every event, not left to chance either.
    for event in EVENTS:
        for field in ("room_id", "body", "client_msg_id"):
            if field not in FIELDS[event]:
                continue
            for text in REFUSED_TEXT:
                if field == "body" and text in REFUSED_IN_NAMES_ONLY.values():
                    continue  # a newline, a soft hyphen ... are fine in a body
                ack = await emit_and_wait(a, event, ({**valid(event, room["id"], 0), field: text},))
                assert well_formed(ack) and not ack["ok"], (event, field, text, ack)
                # A room id that cannot exist is an unknown room, or malformed (empty, not
                # even a string to pydantic: a lone surrogate).
                expected = {"validation_error", "not_found" if field == "room_id" else ""}
                assert ack["error"]["code"] in expected, (event, field, text, ack)
    for n, body in enumerate(ACCEPTED_BODIES.values()):
        ack = await emit_and_wait(
            a, "message:send", ({"room_id": room["id"], "body": body, "client_msg_id": f"c{n}"},)
        )
        assert ack["ok"] and ack["message"]["body"] == body, (body, ack)
        accepted.add(ack["message"]["id"])

    # Both sockets are still up, and the bystander still hears the room.
    assert a.client.connected and b.client.connected
    after = await api.send(alice, room["id"], "after the fuzz")
    assert after.status_code == 202
    accepted.add(after.json()["message"]["id"])
    await b.wait_for("message:new", lambda m: m["body"] == "after the fuzz", timeout=20)

    # Exactly what was acknowledged as sent is in the history; nothing refused got in.
    stored = await api.all_messages(bob, room["id"])
    assert {m["id"] for m in stored} == accepted
    assert set(ACCEPTED_BODIES.values()) <= {m["body"] for m in stored}
    assert [m["seq"] for m in stored] == list(range(1, len(stored) + 1))
