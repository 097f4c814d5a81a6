"""`chat worker`: a consumer-only process (RabbitMQ in, Redis socket.io fan-out out)."""

from __future__ import annotations

import asyncio
import logging
import signal

from prometheus_client import start_http_server

from chat_bootstrap.container import build_container
from chat_bootstrap.runtime import freeze_startup_heap, running
from chat_bootstrap.settings import Settings
from chat_worker.consumer import MessageConsumer

log = logging.getLogger("chat.worker")


async def run_worker(settings: Settings) -> None:
    container = build_container(settings, role="worker")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if settings.worker_metrics_port is not None:
        # Each worker's own numbers (stored messages, partitions held): a scrape target each.
        start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host)
        log.info(
            "metrics on http://%s:%d/metrics",
            settings.worker_metrics_host,
            settings.worker_metrics_port,
        )
    async with running(container):
        consumer = MessageConsumer(
            container.broker(), container.store_messages(), container.clock()
        )
        freeze_startup_heap()
        consuming = asyncio.create_task(consumer.run())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({consuming, stopping}, return_when=asyncio.FIRST_COMPLETED)
        log.info("stopping: finishing the message in hand")
        stopping.cancel()
    # Leaving `running` closed the broker: the message in hand was stored and acked.
    await asyncio.gather(consuming, return_exceptions=True)
    if consuming.done() and not consuming.cancelled() and consuming.exception():
        raise consuming.exception()  # type: ignore[misc]
    log.info("worker stopped")
