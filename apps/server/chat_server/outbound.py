"""A bounded outbound queue per socket, and sockets dropped on time.

engine.io queues every frame for a socket in an unbounded queue that the socket's writer
empties into the connection. A client that stops reading stops the writer (hypercorn
waits for the kernel to take the bytes), and the queue grew without end: 30 MB held for
one such client while 8,000 messages went by. Here each engine.io socket gets a
``SendBuffer`` (through ``create_queue``, engine.io's factory for them) that counts its
bytes and how long its oldest frame has waited. Past ``CHAT_SOCKET_SEND_BUFFER_BYTES``, or
once a frame has waited ``CHAT_SOCKET_SEND_TIMEOUT_SECONDS``, the socket is disconnected
(reason ``send_buffer_full`` or ``send_timeout``), its queue is emptied, and its
connection's handler is ended; the client reconnects and calls ``sync``.

A sweep, once a second, also closes sockets whose client answered no ping within
ping_interval + ping_timeout: engine.io's own check visits each socket only once per
ping_timeout, so such a client stayed up to 20 s longer (70 s were measured).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

import socketio
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)
from prometheus_client import Counter, Gauge

log = logging.getLogger("chat.outbound")

SWEEP_INTERVAL_S = 1.0
# What a frame that is not text or bytes (engine.io's OPEN carries a dict) is counted as.
SMALL_FRAME_BYTES = 64

SOCKETS_DROPPED = Counter(
    "chat_socket_send_dropped_total",
    "sockets disconnected because their client did not read: send_buffer_full, "
    "send_timeout, or ping_timeout",
    ["reason"],
)
QUEUE_BYTES_MAX = Gauge(
    "chat_socket_send_queue_bytes_max",
    "the largest outbound queue of a socket on this node, in bytes",
)
QUEUE_BYTES_TOTAL = Gauge(
    "chat_socket_send_queue_bytes",
    "bytes queued for all sockets on this node, not yet handed to their connection",
)


def frame_size(item: Any) -> int:
    data = getattr(item, "data", None)
    if isinstance(data, str | bytes):
        return len(data)
    return SMALL_FRAME_BYTES


class SendBuffer(asyncio.Queue[Any]):
    """An engine.io socket's outbound queue that knows its size and its oldest frame's age.

    Over a bound, it refuses every frame from then on (None, the writer's stop signal,
    still passes) and tells ``on_overflow`` once.

    ``get`` returns a future rather than a coroutine. engine.io's writer waits for each
    frame with ``asyncio.wait_for(queue.get(), timeout)``, which on Python 3.11 wraps a
    coroutine in a task of its own: one task created, scheduled and run per frame, on
    every delivery. A future is awaited as it is, and a frame put while the writer waits
    is handed to it at once.
    """

    def __init__(
        self,
        limit_bytes: int,
        timeout_s: float,
        on_overflow: Any,
    ) -> None:
        super().__init__()
        self.limit_bytes = limit_bytes
        self.timeout_s = timeout_s
        self.bytes = 0
        # Since when a frame has waited with the writer taking nothing (None: empty).
        self.waiting_since: float | None = None
        self.refused: str | None = None
        self._on_overflow = on_overflow
        self._waiters: deque[asyncio.Future[Any]] = deque()

    def get(self) -> asyncio.Future[Any]:  # type: ignore[override]
        """The next frame, as a future (cancelling it gives up the wait, no frame lost)."""
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._hand_over()
        return waiter

    def _hand_over(self) -> None:
        """Give queued frames to the writers waiting for one, oldest first."""
        while self._waiters and self.qsize():
            waiter = self._waiters.popleft()
            if not waiter.done():  # a wait that timed out or was cancelled takes nothing
                waiter.set_result(self.get_nowait())

    def put_nowait(self, item: Any) -> None:
        if item is None:
            super().put_nowait(item)
            self._hand_over()
            return
        if self.refused is not None:
            return  # the socket is being disconnected: nobody will read this
        size = frame_size(item)
        now = time.monotonic()
        if self.bytes and self.bytes + size > self.limit_bytes:
            self.refuse("send_buffer_full")
            return
        if self.overdue(now):
            self.refuse("send_timeout")
            return
        if self.waiting_since is None:
            self.waiting_since = now
        self.bytes += size
        super().put_nowait(item)
        self._hand_over()

    def get_nowait(self) -> Any:
        item = super().get_nowait()
        if item is not None:
            self.bytes -= frame_size(item)
        # The writer takes everything queued at once: what stays arrived after it looked.
        self.waiting_since = time.monotonic() if self.qsize() else None
        return item

    def overdue(self, now: float) -> bool:
        return self.waiting_since is not None and now - self.waiting_since > self.timeout_s

    def refuse(self, reason: str) -> None:
        if self.refused is None:
            self.refused = reason
            self._on_overflow(self, reason)

    def discard(self) -> None:
        """Drop every queued frame (keeping join() counts right), then wake the writer."""
        while True:
            try:
                super().get_nowait()
            except asyncio.QueueEmpty:
                break
            self.task_done()
        self.bytes = 0
        self.waiting_since = None
        super().put_nowait(None)
        self._hand_over()


class _Connection:
    """A websocket connection and the engine.io session it carries."""

    __slots__ = ("ended", "handler", "writer")

    def __init__(self, handler: asyncio.Task[Any] | None) -> None:
        self.handler = handler
        self.writer: asyncio.Task[Any] | None = None  # the task inside a send, if any
        self.ended = False


class OutboundBounds:
    """Installs a SendBuffer on every new engine.io socket, and ends those over a bound.

    Also ASGI middleware: it knows each websocket connection's engine.io session (from
    ``sid=`` in the URL, or the OPEN frame it sends), so that a socket over its bound has
    its connection ended even while its writer waits for a client that does not read.
    """

    def __init__(
        self,
        app: ASGIFramework,
        sio: socketio.AsyncServer,
        *,
        limit_bytes: int,
        timeout_s: float,
    ) -> None:
        self.app = app
        self._sio = sio
        self._limit = limit_bytes
        self._timeout = timeout_s
        self._connections: dict[str, _Connection] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        sio.eio.create_queue = self._create_queue
        QUEUE_BYTES_MAX.set_function(lambda: max(self._queued(), default=0))
        QUEUE_BYTES_TOTAL.set_function(lambda: sum(self._queued()))

    def _create_queue(self, *args: Any, **kwargs: Any) -> asyncio.Queue[Any]:
        self._start_sweeper()
        return SendBuffer(self._limit, self._timeout, self._overflowed)

    def _queued(self) -> list[int]:
        return [
            s.queue.bytes
            for s in list(self._sio.eio.sockets.values())
            if isinstance(s.queue, SendBuffer)
        ]

    # --- ending a socket ----------------------------------------------------------------
    def _overflowed(self, queue: SendBuffer, reason: str) -> None:
        self._spawn(self._drop(queue, reason))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _drop(self, queue: SendBuffer, reason: str) -> None:
        eio_sid, socket = next(
            ((sid, s) for sid, s in list(self._sio.eio.sockets.items()) if s.queue is queue),
            (None, None),
        )
        held = queue.bytes
        queue.discard()
        if socket is None or eio_sid is None:
            return
        SOCKETS_DROPPED.labels(reason).inc()
        log.warning(
            "socket %s disconnected: %s (%d bytes waiting for the client to read)",
            eio_sid,
            reason,
            held,
        )
        with contextlib.suppress(Exception):  # already closing: nothing to do
            await socket.close(wait=False, abort=True)
        self._end_connection(eio_sid)

    def _end_connection(self, eio_sid: str) -> None:
        """Unblock a writer stuck on a client that does not read, and end the handler."""
        connection = self._connections.get(eio_sid)
        if connection is None or connection.ended:
            return
        connection.ended = True
        if connection.writer is not None and not connection.writer.done():
            connection.writer.cancel()
        if connection.handler is not None and not connection.handler.done():
            connection.handler.cancel()

    # --- the sweep ----------------------------------------------------------------------
    def _start_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        eio = self._sio.eio
        while eio.sockets:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            now, wall = time.monotonic(), time.time()
            for eio_sid, socket in list(eio.sockets.items()):
                if socket.closed or socket.closing:
                    continue
                queue = socket.queue
                if isinstance(queue, SendBuffer) and queue.overdue(now):
                    queue.refuse("send_timeout")
                elif socket.last_ping and wall - socket.last_ping > eio.ping_timeout:
                    SOCKETS_DROPPED.labels("ping_timeout").inc()
                    with contextlib.suppress(Exception):
                        await socket.check_ping_timeout()  # closes it: the client is gone
                    self._end_connection(eio_sid)

    # --- ASGI -----------------------------------------------------------------------------
    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        connection = _Connection(asyncio.current_task())
        eio_sid = _sid_in_query(scope.get("query_string", b""))
        if eio_sid is not None:
            self._connections[eio_sid] = connection

        async def guarded_send(message: ASGISendEvent) -> None:
            nonlocal eio_sid
            if connection.ended:
                return  # its socket was dropped: writing would wait on the client again
            if eio_sid is None and message["type"] == "websocket.send":
                eio_sid = _sid_in_open_frame(message.get("text"))
                if eio_sid is not None:
                    self._connections[eio_sid] = connection
            connection.writer = asyncio.current_task()
            try:
                await send(message)
            finally:
                connection.writer = None

        try:
            await self.app(scope, receive, guarded_send)
        finally:
            if eio_sid is not None and self._connections.get(eio_sid) is connection:
                del self._connections[eio_sid]


def _sid_in_query(query: bytes) -> str | None:
    for part in query.split(b"&"):
        if part.startswith(b"sid="):
            return part[4:].decode("latin-1")
    return None


def _sid_in_open_frame(text: str | None) -> str | None:
    """engine.io's OPEN packet, the first frame of a websocket session: ``0{"sid":...}``."""
    if not text or not text.startswith('0{"sid":"'):
        return None
    end = text.find('"', 9)
    return text[9:end] if end > 9 else None
