"""The asyncio load generator of the bench: a population of members with live sockets,
senders that post over REST, and a tracker that matches every ``message:new`` to its send.

One process, one uvloop: REST over one pooled aiohttp session, every socket a
``ListeningSocket`` (a lean receive-only socket.io client) sharing another aiohttp
session, JSON through orjson. The send time never leaves the process (the tracker keys
on ``client_msg_id``), so latency is one monotonic clock read at each end; it is also
written in the body for anyone reading the messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import aiohttp
import orjson

from loadtests.listening_socket import ListeningSocket

PASSWORD = "correct horse battery"
now = time.perf_counter


class RestError(RuntimeError):
    """A set-up call answered something other than the contract says."""


@dataclass
class Member:
    """One user of the population, with the node its socket lives on and the node it posts to."""

    index: int
    user_id: str
    token: str
    rest_url: str
    socket_url: str
    socket: ListeningSocket | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}


@dataclass
class Room:
    id: str
    members: list[Member]
    senders: list[Member]


@dataclass
class Pending:
    """A sent message waiting for its deliveries."""

    sent_at: float
    room_id: str
    remaining: int
    seen: set[int] = field(default_factory=set)
    done: asyncio.Event | None = None


@dataclass
class PhaseStats:
    """What one phase measured (all times in seconds)."""

    started_at: float = 0.0
    sent: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    skipped: int = 0  # open loop: not sent because too many posts were already in flight
    expected: int = 0
    delivered: int = 0
    duplicated: int = 0
    order_violations: int = 0
    stray: int = 0  # a message:new for no message of this phase
    last_delivery_at: float = 0.0
    latencies: list[float] = field(default_factory=list)
    accept_latencies: list[float] = field(default_factory=list)


class Tracker:
    """Matches ``message:new`` events to sends: latency, duplicates, losses, order.

    A delivery is (socket index, client_msg_id); the same pair twice is a duplicate. Order:
    at each socket, the ``seq`` of one room must only go up.
    """

    def __init__(self) -> None:
        self.pending: dict[str, Pending] = {}
        self.stats = PhaseStats()
        self.last_seq: dict[tuple[int, str], int] = {}
        self.outstanding = 0  # deliveries expected and not yet seen, this phase
        self.settled = asyncio.Event()  # set while ``outstanding`` is zero
        self.settled.set()

    def new_phase(self) -> PhaseStats:
        self.pending = {}
        self.stats = PhaseStats(started_at=now())
        self._count(-self.outstanding)
        return self.stats

    def _count(self, change: int) -> None:
        self.outstanding += change
        if self.outstanding:
            self.settled.clear()
        else:
            self.settled.set()

    def expect(self, key: str, room: Room, sent_at: float, wait: bool = False) -> Pending:
        pending = Pending(sent_at, room.id, len(room.members))
        if wait:
            pending.done = asyncio.Event()
        self.pending[key] = pending
        self.stats.expected += pending.remaining
        self._count(pending.remaining)
        return pending

    def cancel(self, key: str) -> None:
        """The send failed: expect none of its deliveries."""
        pending = self.pending.pop(key, None)
        if pending is not None:
            self.stats.expected -= len(pending.seen) + pending.remaining
            self.stats.delivered -= len(pending.seen)
            self._count(-pending.remaining)
            if pending.done is not None:
                pending.done.set()

    def on_message(self, socket_index: int, message: dict[str, Any]) -> None:
        at = now()
        stats = self.stats
        seq = message.get("seq")
        if isinstance(seq, int):
            order_key = (socket_index, message["room_id"])
            last = self.last_seq.get(order_key, 0)
            if seq < last:
                stats.order_violations += 1
            else:
                self.last_seq[order_key] = seq
        pending = self.pending.get(message.get("client_msg_id") or "")
        if pending is None:
            stats.stray += 1
            return
        if socket_index in pending.seen:
            stats.duplicated += 1
            return
        pending.seen.add(socket_index)
        pending.remaining -= 1
        self._count(-1)
        stats.delivered += 1
        stats.last_delivery_at = at
        stats.latencies.append(at - pending.sent_at)
        if pending.remaining == 0 and pending.done is not None:
            pending.done.set()

    def lost(self) -> int:
        return self.outstanding


class Population:
    """Users, rooms and sockets on a target (one URL, or several nodes of a cluster)."""

    def __init__(self, urls: Sequence[str], tag: str | None = None, concurrency: int = 16) -> None:
        self.urls = list(urls)
        self.tag = tag or uuid.uuid4().hex[:8]
        self.tracker = Tracker()
        self.members: list[Member] = []
        self.rooms: list[Room] = []
        self.sockets: list[ListeningSocket] = []  # every socket opened, closed by close()
        self._limit = asyncio.Semaphore(concurrency)
        self._counter = itertools.count()
        self.rest = aiohttp.ClientSession(
            # Idle keep-alive connections are dropped before hypercorn's 5 s timeout closes
            # them: reusing one the server is closing reads as ServerDisconnectedError.
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=3.0),
            timeout=aiohttp.ClientTimeout(total=30),
        )
        # Websockets hold their connection for life: an unlimited pool, or socket 101 waits.
        self.ws_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def close(self) -> None:
        await asyncio.gather(*(s.disconnect() for s in self.sockets), return_exceptions=True)
        await self.rest.close()
        await self.ws_session.close()

    async def _post(
        self, url: str, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        async with self.rest.post(
            url + path,
            data=orjson.dumps(body),
            headers=headers or {"Content-Type": "application/json"},
        ) as r:
            raw = await r.read()
            return r.status, (orjson.loads(raw) if raw else {})

    async def add_users(self, count: int) -> list[Member]:
        """Register and log in ``count`` users; member i posts to node i+1, listens on node i."""

        async def one(index: int) -> Member:
            async with self._limit:
                name = f"b{self.tag}_{index}"
                url = self.urls[(index + 1) % len(self.urls)]
                credentials = {"username": name, "password": PASSWORD}
                status, answer = await self._post(url, "/api/v1/auth/register", credentials)
                if status != 201:
                    raise RestError(f"register answered {status}: {answer}")
                status, answer = await self._post(url, "/api/v1/auth/login", credentials)
                if status != 200:
                    raise RestError(f"login answered {status}: {answer}")
                return Member(
                    index,
                    answer["user"]["id"],
                    answer["access_token"],
                    rest_url=url,
                    socket_url=self.urls[index % len(self.urls)],
                )

        start = len(self.members)
        added = await asyncio.gather(*(one(start + i) for i in range(count)))
        self.members += added
        return list(added)

    async def add_room(self, members: list[Member], senders: int, kind: str = "group") -> Room:
        """The first member creates the room with all the others in one call: joined one
        by one, each join told every member so far (n² events: 500k frames for the idle
        scenario's 200 users of 25 sockets, still being written when its broadcasts began).
        ``kind="direct"``: the direct room of a pair (an existing one is answered 200)."""
        owner = members[0]
        body: dict[str, Any] = {"member_ids": [m.user_id for m in members[1:]]}
        if kind == "direct":
            body["kind"] = "direct"
        else:
            body["name"] = f"bench {self.tag}"
        status, answer = await self._post(owner.rest_url, "/api/v1/rooms", body, owner.headers)
        if status not in ((200, 201) if kind == "direct" else (201,)):
            raise RestError(f"create room answered {status}: {answer}")
        room = Room(answer["room"]["id"], members, members[:senders])
        self.rooms.append(room)
        return room

    async def open_socket(self, member: Member, index: int | None = None) -> ListeningSocket:
        """Connect one websocket for ``member``; its deliveries count as socket ``index``."""
        on_message: Callable[[dict[str, Any]], None] = partial(
            self.tracker.on_message, member.index if index is None else index
        )
        socket = ListeningSocket(
            self.ws_session,
            member.socket_url,
            auth={"token": member.token},
            handlers={"message:new": on_message},
        )
        self.sockets.append(socket)
        async with self._limit:
            await socket.connect(timeout=15)
        return socket

    async def connect_all(self) -> None:
        async def one(member: Member) -> None:
            member.socket = await self.open_socket(member)

        await asyncio.gather(*(one(m) for m in self.members if m.socket is None))

    # -- sending ---------------------------------------------------------------------------

    async def send(self, sender: Member, room: Room, sent_at: float, wait: bool = False) -> None:
        """Post one message; its deliveries are expected at every member's socket."""
        n = next(self._counter)
        key = f"{self.tag}-{n}"
        stats = self.tracker.stats
        pending = self.tracker.expect(key, room, sent_at, wait)
        stats.sent += 1
        t0 = now()
        try:
            status, _ = await self._post(
                sender.rest_url,
                f"/api/v1/rooms/{room.id}/messages",
                {"body": f"bench {n} t={sent_at:.6f}", "client_msg_id": key},
                sender.headers,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            status, reason = 0, type(exc).__name__
        else:
            reason = str(status)
        if status == 202:
            stats.accepted += 1
            stats.accept_latencies.append(now() - t0)
        else:
            stats.rejected[reason] += 1
            self.tracker.cancel(key)
        if wait and status == 202 and pending.done is not None:
            # Closed loop: a sender's next message waits for this one to reach every member.
            # A loss then costs its timeout once; the tracker still counts it as lost.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pending.done.wait(), timeout=10)

    def senders(self) -> list[tuple[Member, Room]]:
        return [(s, room) for room in self.rooms for s in room.senders]
