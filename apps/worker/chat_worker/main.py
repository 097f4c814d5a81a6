"""`chat worker`: a consumer-only process (RabbitMQ in, Redis socket.io fan-out out)."""

from __future__ import annotations

import asyncio
import logging
import signal

from chat_bootstrap.container import build_container
from chat_bootstrap.runtime import freeze_startup_heap, running
from chat_bootstrap.settings import Settings
from chat_worker.ops import WorkerOpsApp, serve_worker_ops

log = logging.getLogger("chat.worker")


async def run_worker(settings: Settings) -> None:
    container = build_container(settings, role="worker")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ops_stop = asyncio.Event()
    async with running(container):
        watched: set[asyncio.Task[None]] = set()
        serving_ops: asyncio.Task[None] | None = None
        if settings.worker_ops_port:
            ops = WorkerOpsApp(
                {
                    "database": container.uow().check,
                    "broker": container.broker().check,
                    "socketio": container.notifier().check,
                }
            )
            serving_ops = asyncio.create_task(
                serve_worker_ops(ops, settings.worker_ops_host, settings.worker_ops_port, ops_stop)
            )
            watched.add(serving_ops)  # a port that cannot be bound stops the worker
        freeze_startup_heap()
        consuming = asyncio.create_task(container.consumer().run())
        # Beside the consumer, never in its path: returns at once with no subscribers.
        dispatching = asyncio.create_task(container.webhook_dispatcher().run())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({consuming, stopping, *watched}, return_when=asyncio.FIRST_COMPLETED)
        log.info("stopping: finishing the message in hand")
        stopping.cancel()
    # Leaving `running` closed the broker: the message in hand was stored and acked.
    await asyncio.gather(consuming, return_exceptions=True)
    # Leaving `running` closed the webhook outbox too: undelivered events wait in RabbitMQ.
    await asyncio.gather(dispatching, return_exceptions=True)
    ops_stop.set()
    for task in (consuming, serving_ops):
        if task is not None and task.done() and not task.cancelled() and task.exception():
            raise task.exception()  # type: ignore[misc]
    if serving_ops is not None:
        await asyncio.gather(serving_ops, return_exceptions=True)
    log.info("worker stopped")
