"""`chat serve`: one server node on hypercorn, with the worker in-process in embedded mode."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from hypercorn.asyncio import serve
from hypercorn.config import Config

from chat_bootstrap.container import build_container
from chat_bootstrap.runtime import running
from chat_bootstrap.settings import Settings
from chat_server.app import create_app
from chat_worker.consumer import MessageConsumer

log = logging.getLogger("chat.server")


async def run_server(settings: Settings, host: str, port: int) -> None:
    container = build_container(settings, role="server")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async with running(container):
        app = create_app(container)
        sio = container.socketio_server()
        consuming: asyncio.Task[None] | None = None
        if settings.embedded_worker:
            consumer = MessageConsumer(
                container.broker(), container.store_message(), container.clock()
            )
            consuming = asyncio.create_task(consumer.run())

        async def shutdown_trigger() -> None:
            await stop.wait()
            log.info("stopping: closing client connections")
            # hypercorn waits for every open connection before it returns (hypercorn#308);
            # disconnecting the sockets ourselves makes shutdown take seconds, not minutes.
            await sio.shutdown()
            with contextlib.suppress(Exception):
                await sio.eio.disconnect()

        config = Config()
        config.bind = [f"{host}:{port}"]
        config.accesslog = None
        # Through our handler (text or JSON, with request ids), not hypercorn's own.
        config.errorlog = logging.getLogger("hypercorn.error")
        config.graceful_timeout = 5
        config.websocket_ping_interval = None
        log.info("serving on http://%s:%d", host, port)
        await serve(app, config, shutdown_trigger=shutdown_trigger)
    # Leaving `running` closed the broker, which ended the consumer after the message in hand.
    if consuming is not None:
        await asyncio.gather(consuming, return_exceptions=True)
    log.info("server stopped")
