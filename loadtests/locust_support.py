"""What the Locust users of one process share: the nodes, the room pool, the delivery book,
and (on the master, or a lone process) the run's merged tally.

Locust runs users as gevent greenlets in one thread, so plain dicts need no locks: nothing
here yields between reading and writing. Each Locust process (``--processes``, or a
``--worker``) has its own pool and book, so a room's members and the messages expected at
them live in one process; the master adds up what every process reports (``RunTotals``).
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
import requests

from loadtests.delivery_tally import Tally
from loadtests.reconcile import Missing, Reconciliation, classify
from loadtests.run_verdict import Window

# Fires one Locust request event: (name, response_time_ms, length, exception or None).
Reporter = Callable[[str, float, int, BaseException | None], None]
DELIVERY = "message:new delivery"
MISSING = "message:new missing"
DUPLICATE = "message:new duplicate"
OUT_OF_ORDER = "message:new out of order"
LATE = "message:new late arrival"  # arrived after it was counted missing: not a delivery


def nodes(host: str | None) -> list[str]:
    """The nodes to aim at: CHAT_LOCUST_HOSTS, else --host, each a comma-separated list."""
    raw = os.environ.get("CHAT_LOCUST_HOSTS") or host or "http://127.0.0.1:8000"
    return [h.strip().rstrip("/") for h in raw.split(",") if h.strip()]


def send_stamp(cmid: str) -> float:
    """The wall-clock send time written at the end of a client_msg_id."""
    return float(cmid.rsplit("-", 1)[1])


class MissingDelivery(Exception):
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
    owner_node: str | None = None
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

    def by_id(self) -> dict[str, PoolRoom]:
        return {r.room_id: r for r in self.rooms.values() if r.room_id is not None}


@dataclass
class Expected:
    sent_at: float
    room_id: str
    post_node: str
    waiting: dict[int, str]  # member -> the node its socket is on
    got: set[int] = field(default_factory=set)


class DeliveryBook:
    """Each message posted, the members that must get it, and who did: latency on receipt,
    counted rows for the missing (after ``timeout`` s), the duplicated and the
    out-of-order, all in ``tally``; the missing kept for the reconciliation."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.report: Reporter = lambda *_: None
        self._counter = itertools.count()
        self.reset()

    def reset(self) -> None:
        """A new run: nothing expected, nothing counted, sending allowed."""
        self.sending = True
        self.tally = Tally()
        self.expected: dict[str, Expected] = {}
        # cmid -> (when completed, who got it): a later copy at one of them is a duplicate
        self.finished: dict[str, tuple[float, set[int]]] = {}
        self.last_seq: dict[tuple[int, str], int] = {}
        self.missing: dict[tuple[str, int], Missing] = {}
        self.arrived_late: set[tuple[str, int]] = set()
        self.node_of: dict[int, str] = {}  # member -> its socket's node
        self.final: Reconciliation | None = None  # set once this process has finished
        self.finishing = False
        self.run_id = ""  # the master's name of the run (a worker's reports carry it)

    def new_cmid(self, user_number: int) -> str:
        return f"lc{os.getpid()}.{user_number}.{next(self._counter)}-{time.time():.6f}"

    def expect(self, cmid: str, room_id: str, post_node: str, members: set[int]) -> None:
        waiting = {m: self.node_of.get(m, "?") for m in members}
        self.expected[cmid] = Expected(time.monotonic(), room_id, post_node, waiting)

    def posted(self, post_node: str, accepted: bool) -> None:
        posts = self.tally.node_posts(post_node)
        posts.sent += 1
        if accepted:
            posts.accepted += 1
        else:
            posts.errors += 1

    def cancel(self, cmid: str) -> None:
        self.expected.pop(cmid, None)

    def received(self, user_number: int, message: dict[str, Any]) -> None:
        cmid = message.get("client_msg_id") or ""
        if not cmid.startswith("lc"):
            return  # somebody else's message
        node = self.node_of.get(user_number, "?")
        seq, room_id = message.get("seq"), message.get("room_id", "")
        entry = self.expected.get(cmid)
        post_node = entry.post_node if entry is not None else "?"
        if isinstance(seq, int):
            last = self.last_seq.get((user_number, room_id), 0)
            if seq < last:
                self.tally.count("out_of_order", post_node, node)
                self.report(OUT_OF_ORDER, 0, 0, OrderViolation(f"seq {seq} after {last}"))
            self.last_seq[(user_number, room_id)] = max(seq, last)
        got = entry.got if entry is not None else self.finished.get(cmid, (0.0, set()))[1]
        if user_number in got:
            self.tally.count("duplicated", post_node, node)
            self.report(DUPLICATE, 0, 0, DuplicateDelivery("same message:new twice"))
            return
        got.add(user_number)
        if (cmid, user_number) in self.missing:
            # Already counted missing: it is late, not delivered; the reconciliation says so.
            late = self.missing[(cmid, user_number)]
            self.arrived_late.add((cmid, user_number))
            self.tally.count("arrived_late", late.post_node, late.deliver_node)
            late_ms = max(0.0, (time.time() - send_stamp(cmid)) * 1000)
            self.report(LATE, late_ms, len(message.get("body", "")), None)
            return
        if entry is None or user_number not in entry.waiting:
            return  # joined after the send, or another process's message
        del entry.waiting[user_number]
        latency_ms = max(0.0, (time.time() - send_stamp(cmid)) * 1000)
        self.tally.delivered(entry.post_node, node, latency_ms)
        self.report(DELIVERY, latency_ms, len(message.get("body", "")), None)
        if not entry.waiting:
            del self.expected[cmid]
            self.finished[cmid] = (time.monotonic(), entry.got)

    def forget(self, user_number: int) -> None:
        """A user stopped listening: expect nothing more at it."""
        for entry in self.expected.values():
            entry.waiting.pop(user_number, None)

    def sweep(self, now: float | None = None, everything: bool = False) -> int:
        """Count as missing every delivery older than the timeout (all of them if
        ``everything``); forget old duplicate markers. Returns the count missing."""
        now = time.monotonic() if now is None else now
        count = 0
        for cmid, entry in list(self.expected.items()):
            if everything or now - entry.sent_at > self.timeout:
                for member, node in entry.waiting.items():
                    count += 1
                    self.missing[(cmid, member)] = Missing(
                        cmid, member, entry.room_id, entry.post_node, node
                    )
                    self.tally.count("missing", entry.post_node, node)
                    self.report(
                        MISSING, 0, 0, MissingDelivery(f"not received within {self.timeout:g}s")
                    )
                del self.expected[cmid]
                self.finished[cmid] = (now, entry.got)
        for cmid, (at, _) in list(self.finished.items()):
            if now - at > 3 * self.timeout:
                del self.finished[cmid]
        return count

    def outstanding(self) -> int:
        return sum(len(e.waiting) for e in self.expected.values())

    def drain(self) -> None:
        """At the end of a run: stop posting, wait (up to the timeout) for what is still on
        its way, then count the rest as missing, before the users and their sockets go."""
        self.sending = False
        deadline = time.monotonic() + self.timeout
        while self.outstanding() and time.monotonic() < deadline:
            gevent.sleep(0.1)
        self.sweep(everything=True)


def read_history(room: PoolRoom, hosts: list[str], timeout: float = 5.0) -> set[str] | None:
    """The client_msg_ids stored in ``room``, read page by page with ``after_seq`` from its
    owner's node (or any other node that answers); None if no node could be read."""
    order = [room.owner_node] if room.owner_node else []
    order += [h for h in hosts if h != room.owner_node]
    headers = {"Authorization": f"Bearer {room.owner_token}"}
    for host in order:
        stored: set[str] = set()
        after = 0
        try:
            while True:
                r = requests.get(
                    f"{host}/api/v1/rooms/{room.room_id}/messages",
                    params={"after_seq": after, "limit": 200},
                    headers=headers,
                    timeout=timeout,
                )
                if r.status_code != 200:
                    break
                page = r.json()
                for message in page["messages"]:
                    if message.get("client_msg_id"):
                        stored.add(message["client_msg_id"])
                    after = max(after, message.get("seq") or after)
                if not page.get("has_more") or not page["messages"]:
                    return stored
        except (requests.RequestException, ValueError, KeyError):
            continue
    return None


def reconcile(book: DeliveryBook, pool: RoomPool, hosts: list[str]) -> Reconciliation:
    """Class every delivery the book counted missing as late or lost, reading the history
    of only the rooms that have some."""
    rooms = pool.by_id()
    wanted = {m.room_id for key, m in book.missing.items() if key not in book.arrived_late}
    stored = {rid: read_history(rooms[rid], hosts) if rid in rooms else None for rid in wanted}
    return classify(book.missing.values(), book.arrived_late, stored)


@dataclass
class Mark:
    """A snapshot of the run's totals: a window's start."""

    at: float
    users: int
    tally: Tally
    http_calls: int
    http_failures: int


@dataclass
class RunTotals:
    """On the master (or a lone process): the tally of every process, the reconciliation,
    which workers have sent their final report, and the load windows measured so far."""

    tallies: dict[str, Tally] = field(default_factory=dict)  # process id -> its tally
    reconciliations: dict[str, Reconciliation] = field(default_factory=dict)
    final: set[str] = field(default_factory=set)
    unreported: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)
    windows: list[Window] = field(default_factory=list)
    running: bool = False
    window_seconds: float = float(os.environ.get("CHAT_LOCUST_WINDOW", "10"))
    run_id: str = ""
    last: Mark | None = None

    def reset(self) -> None:
        self.tallies, self.reconciliations = {}, {}
        self.final, self.unreported = set(), set()
        self.started, self.windows, self.last = time.monotonic(), [], None

    def tally(self) -> Tally:
        return Tally.merged(self.tallies.values())

    def reconciliation(self) -> Reconciliation:
        total = Reconciliation()
        for r in self.reconciliations.values():
            total.merge(r)
        return total

    @staticmethod
    def http_counts(environment: Any) -> tuple[int, int]:
        """Every HTTP call so far and how many failed (socket rows left out)."""
        entries = [e for e in environment.runner.stats.entries.values() if e.method != "socketio"]
        return sum(e.num_requests for e in entries), sum(e.num_failures for e in entries)

    def mark(self, environment: Any) -> Mark:
        """Start a window now."""
        calls, failures = self.http_counts(environment)
        users = environment.runner.user_count if environment.runner else 0
        self.last = Mark(time.monotonic(), users, self.tally().copy(), calls, failures)
        return self.last

    def close_window(self, environment: Any, label: str, final: bool = False) -> Window | None:
        """End the window begun at the last mark, keep it, and begin the next one. A last
        window under a second long is dropped: too short to say anything."""
        start, end = self.last, self.mark(environment)
        if start is None or (final and end.at - start.at < 1.0):
            return None
        window = Window(
            label=label,
            users=max(start.users, end.users),
            seconds=end.at - start.at,
            tally=end.tally.minus(start.tally),
            http_calls=end.http_calls - start.http_calls,
            http_failures=end.http_failures - start.http_failures,
        )
        self.windows.append(window)
        return window


# One of each per Locust process (module state: the locustfile and the shapes share it).
pool = RoomPool(int(os.environ.get("CHAT_LOCUST_ROOM_SIZE", "5")))
book = DeliveryBook(float(os.environ.get("CHAT_LOCUST_LOSS_TIMEOUT", "10")))
run = RunTotals()
