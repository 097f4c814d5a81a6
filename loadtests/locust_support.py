"""What the Locust users of one process share: the nodes, the room pool, the delivery book.

Locust runs users as gevent greenlets in one thread, so plain dicts need no locks: nothing
here yields between reading and writing. Each Locust process (``--processes``) has its own
pool and book, so a room's members and the messages expected at them live in one process.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.event

# Fires one Locust request event: (name, response_time_ms, length, exception or None).
Reporter = Callable[[str, float, int, BaseException | None], None]
DELIVERY = "message:new delivery"


def nodes(host: str | None) -> list[str]:
    """The nodes to aim at: CHAT_LOCUST_HOSTS, else --host, each a comma-separated list."""
    raw = os.environ.get("CHAT_LOCUST_HOSTS") or host or "http://127.0.0.1:8000"
    return [h.strip().rstrip("/") for h in raw.split(",") if h.strip()]


def send_stamp(cmid: str) -> float:
    """The wall-clock send time written at the end of a client_msg_id."""
    return float(cmid.rsplit("-", 1)[1])


class LostDelivery(Exception):
    """A member did not get a message:new within the loss timeout."""


class DuplicateDelivery(Exception):
    """A member got the same message:new twice."""


class OrderViolation(Exception):
    """A member got a room's seq lower than one it had already seen."""


@dataclass
class PoolRoom:
    """A room of the shared pool: its owner's token (to add members) and ready members."""

    number: int
    created: gevent.event.Event = field(default_factory=gevent.event.Event)
    room_id: str | None = None
    owner_token: str | None = None
    members: set[int] = field(default_factory=set)  # user numbers whose socket is listening


class RoomPool:
    """Users fill rooms of ``room_size`` in arrival order: the first of a room creates it,
    the next ones are added over REST by the owner's token."""

    def __init__(self, room_size: int) -> None:
        self.room_size = room_size
        self.rooms: dict[int, PoolRoom] = {}
        self._numbers = itertools.count()

    def next_user(self) -> int:
        return next(self._numbers)

    def room_of(self, user_number: int) -> tuple[PoolRoom, bool]:
        """The room this user belongs in, and whether the user must create it."""
        number = user_number // self.room_size
        creator = number not in self.rooms
        room = self.rooms.setdefault(number, PoolRoom(number))
        return room, creator


@dataclass
class Expected:
    sent_at: float
    waiting: set[int]
    got: set[int] = field(default_factory=set)


class DeliveryBook:
    """Each message posted, the members that must get it, and who did: latency on receipt,
    failures for the lost (after ``timeout`` s), the duplicated and the out-of-order."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.expected: dict[str, Expected] = {}
        # cmid -> (when completed, who got it): a later copy at one of them is a duplicate
        self.finished: dict[str, tuple[float, set[int]]] = {}
        self.last_seq: dict[tuple[int, str], int] = {}
        self.report: Reporter = lambda *_: None
        self._counter = itertools.count()

    def new_cmid(self, user_number: int) -> str:
        return f"lc{os.getpid()}.{user_number}.{next(self._counter)}-{time.time():.6f}"

    def expect(self, cmid: str, members: set[int]) -> None:
        self.expected[cmid] = Expected(time.monotonic(), set(members))

    def cancel(self, cmid: str) -> None:
        self.expected.pop(cmid, None)

    def received(self, user_number: int, message: dict[str, Any]) -> None:
        cmid = message.get("client_msg_id") or ""
        if not cmid.startswith("lc"):
            return  # somebody else's message
        seq, room_id = message.get("seq"), message.get("room_id", "")
        if isinstance(seq, int):
            last = self.last_seq.get((user_number, room_id), 0)
            if seq < last:
                self.report(DELIVERY, 0, 0, OrderViolation(f"seq {seq} after {last}"))
            self.last_seq[(user_number, room_id)] = max(seq, last)
        entry = self.expected.get(cmid)
        got = entry.got if entry is not None else self.finished.get(cmid, (0.0, set()))[1]
        if user_number in got:
            self.report(DELIVERY, 0, 0, DuplicateDelivery("same message:new twice"))
            return
        got.add(user_number)
        if entry is None or user_number not in entry.waiting:
            return  # joined after the send, or another process's message
        entry.waiting.discard(user_number)
        latency_ms = max(0.0, (time.time() - send_stamp(cmid)) * 1000)
        self.report(DELIVERY, latency_ms, len(message.get("body", "")), None)
        if not entry.waiting:
            del self.expected[cmid]
            self.finished[cmid] = (time.monotonic(), entry.got)

    def forget(self, user_number: int) -> None:
        """A user stopped listening: expect nothing more at it."""
        for entry in self.expected.values():
            entry.waiting.discard(user_number)

    def sweep(self, now: float | None = None, everything: bool = False) -> int:
        """Report as lost every delivery older than the timeout (all of them if
        ``everything``); forget old duplicate markers. Returns the count lost."""
        now = time.monotonic() if now is None else now
        lost = 0
        for cmid, entry in list(self.expected.items()):
            if everything or now - entry.sent_at > self.timeout:
                for _ in entry.waiting:
                    lost += 1
                    self.report(
                        DELIVERY,
                        self.timeout * 1000,
                        0,
                        LostDelivery(f"not received within {self.timeout:g}s"),
                    )
                del self.expected[cmid]
                self.finished[cmid] = (now, entry.got)
        for cmid, (at, _) in list(self.finished.items()):
            if now - at > 3 * self.timeout:
                del self.finished[cmid]
        return lost

    def outstanding(self) -> int:
        return sum(len(e.waiting) for e in self.expected.values())

    def drain(self) -> None:
        """At test stop: wait (up to the timeout) for what is still on its way, then count
        the rest as lost, before the users and their sockets go."""
        deadline = time.monotonic() + self.timeout
        while self.outstanding() and time.monotonic() < deadline:
            gevent.sleep(0.1)
        self.sweep(everything=True)
