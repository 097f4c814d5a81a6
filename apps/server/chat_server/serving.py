"""`chat serve`: one server node on hypercorn, with the worker in-process in embedded mode."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import socketio
from hypercorn.asyncio import serve
from hypercorn.config import Config
from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope

from chat_bootstrap.container import build_container
from chat_bootstrap.runtime import freeze_startup_heap, running
from chat_bootstrap.settings import Settings
from chat_server.app import create_app
from chat_server.ops_listener import create_ops_app

log = logging.getLogger("chat.server")

# Shutdown budget, well under an orchestrator's usual 30 s before SIGKILL: telling every
# client to leave, then the wait for clients to close their websockets, then the wait for
# the connections we end ourselves. hypercorn's graceful_timeout covers in-flight requests.
DISCONNECT_TIMEOUT_S = 4.0
CLIENT_CLOSE_GRACE_S = 2.0
ABORT_GRACE_S = 2.0
REQUEST_GRACE_S = 5  # hypercorn's graceful_timeout, for requests in flight
# The longest a stop can take: what an orchestrator's grace period must exceed.
DRAIN_BUDGET_S = DISCONNECT_TIMEOUT_S + CLIENT_CLOSE_GRACE_S + ABORT_GRACE_S + REQUEST_GRACE_S


class OpenWebsockets:
    """ASGI middleware that knows the task serving each open websocket.

    engine.io's disconnect only sends the client a CLOSE packet; its handler then waits for
    the client to close the websocket (up to ping_interval + ping_timeout, 45 s). A client
    that never answers (a frozen process, a dead network path) kept the connection open, and
    hypercorn waits for every open connection before it returns (PITFALLS §1, hypercorn#308):
    on stock asyncio with Python >= 3.12, forever. Shutdown ends those connections itself.
    """

    def __init__(self, app: ASGIFramework) -> None:
        self.app = app
        self.closing = False
        self._open: set[asyncio.Task[Any]] = set()
        self._none_open = asyncio.Event()
        self._none_open.set()

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        task = asyncio.current_task()
        if scope["type"] != "websocket" or task is None:
            await self.app(scope, receive, send)
            return
        if self.closing:  # refuse newcomers while we drain the others
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1001, "reason": "server stopping"})
            return
        self._open.add(task)
        self._none_open.clear()
        try:
            await self.app(scope, receive, send)
        finally:
            self._open.discard(task)
            if not self._open:
                self._none_open.set()

    def __len__(self) -> int:
        return len(self._open)

    async def wait_closed(self, timeout: float) -> bool:
        """Whether every websocket closed within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await self._none_open.wait()
        except TimeoutError:
            return False
        return True

    def abort(self) -> None:
        """End every websocket still open. Cancelling its handler is engine.io's own way out
        (the reader catches CancelledError, closes the websocket, runs the disconnect);
        hypercorn then closes the connection without waiting for the client."""
        for task in self._open:
            task.cancel()


async def disconnect_clients(sio: socketio.AsyncServer) -> None:
    """Tell every client to leave, all at once, within DISCONNECT_TIMEOUT_S.

    All at once on purpose: each socket is marked closing before any disconnect handler
    runs, so the presence fan-out of users going offline skips the sockets that are leaving
    anyway. In batches, the remaining sockets got every "offline" event: 1000 sockets in one
    room took over 4 s instead of under 2 s.
    """
    count = len(sio.eio.sockets)
    if count == 0:
        return  # engine.io's disconnect() raises ValueError on an empty asyncio.wait
    try:
        async with asyncio.timeout(DISCONNECT_TIMEOUT_S):
            await sio.eio.disconnect()
    except TimeoutError:
        log.warning(
            "stopping: disconnecting %d clients took over %.0f s", count, DISCONNECT_TIMEOUT_S
        )
    except Exception:  # a failing close must not keep the process up
        log.exception("stopping: disconnecting clients failed")


def listener_config(host: str, port: int) -> Config:
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    # Through our handler (text or JSON, with request ids), not hypercorn's own.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = REQUEST_GRACE_S
    return config


async def run_server(settings: Settings, host: str, port: int) -> None:
    container = build_container(settings, role="server")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async with running(container):
        app = OpenWebsockets(create_app(container))
        sio = container.socketio_server()
        consuming: asyncio.Task[None] | None = None
        dispatching: asyncio.Task[None] | None = None
        if settings.embedded_worker:
            consuming = asyncio.create_task(container.consumer().run())
            # Webhooks leave from here too, beside (never in) the store path.
            dispatching = asyncio.create_task(container.webhook_dispatcher().run())

        async def shutdown_trigger() -> None:
            await stop.wait()
            log.info("stopping: closing %d client connections", len(app))
            started = loop.time()
            app.closing = True
            # hypercorn waits for every open connection before it returns (hypercorn#308);
            # closing them ourselves, within a bound, makes shutdown take seconds.
            await sio.shutdown()
            await disconnect_clients(sio)
            if not await app.wait_closed(CLIENT_CLOSE_GRACE_S):
                log.warning(
                    "stopping: %d clients did not close their websocket; ending them", len(app)
                )
                app.abort()
                if not await app.wait_closed(ABORT_GRACE_S):
                    log.error("stopping: %d websockets would not end", len(app))
            log.info("stopping: client connections closed in %.1f s", loop.time() - started)

        config = listener_config(host, port)
        config.websocket_ping_interval = None
        ops_stop = asyncio.Event()
        ops_serving: asyncio.Task[None] | None = None
        if settings.ops_port is not None:
            ops_config = listener_config(settings.ops_host, settings.ops_port)
            ops_serving = asyncio.create_task(
                serve(create_ops_app(container), ops_config, shutdown_trigger=ops_stop.wait)
            )
            log.info("operations endpoints on http://%s:%d", settings.ops_host, settings.ops_port)
        log.info("serving on http://%s:%d", host, port)
        freeze_startup_heap()
        try:
            await serve(app, config, shutdown_trigger=shutdown_trigger)
        finally:
            # Probes and scrapes are answered while the clients drain, then the listener goes.
            ops_stop.set()
            if ops_serving is not None:
                await asyncio.gather(ops_serving, return_exceptions=True)
    # Leaving `running` closed the broker, which ended the consumer after the message in hand.
    if consuming is not None:
        await asyncio.gather(consuming, return_exceptions=True)
    if dispatching is not None:
        await asyncio.gather(dispatching, return_exceptions=True)
    log.info("server stopped")
