"""`chat worker`: a consumer-only process (RabbitMQ in, Redis socket.io fan-out out)."""

from __future__ import annotations

import asyncio
import logging
import signal

from chat_bootstrap.container import build_container
from chat_bootstrap.runtime import freeze_startup_heap, running
from chat_bootstrap.settings import Settings

log = logging.getLogger("chat.worker")


async def run_worker(settings: Settings) -> None:
    container = build_container(settings, role="worker")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running(container):
        freeze_startup_heap()
        consuming = asyncio.create_task(container.consumer().run())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({consuming, stopping}, return_when=asyncio.FIRST_COMPLETED)
        log.info("stopping: finishing the message in hand")
        stopping.cancel()
    # Leaving `running` closed the broker: the message in hand was stored and acked.
    await asyncio.gather(consuming, return_exceptions=True)
    if consuming.done() and not consuming.cancelled() and consuming.exception():
        raise consuming.exception()  # type: ignore[misc]
    log.info("worker stopped")
