"""What the container opens at start and closes at shutdown: its Resource providers.

dependency-injector starts a container's resources concurrently, and stops a resource
only once every resource that takes it as an argument has stopped. So a resource's
extra positional arguments (``*outlived_by``) are the resources it must start after and
stop before; nothing else orders them (PITFALLS §5).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from chat_adapters.sql.checkpoints import checkpointing
from chat_adapters.sql.migrate import migrate
from chat_domain.ports.broker import MessageBroker
from chat_domain.ports.webhooks import WebhookOutbox
from chat_domain.usecases.webhook_relay import WebhookRelay

log = logging.getLogger("chat.runtime")


class Closable(Protocol):
    async def close(self) -> None: ...


async def database(engine: AsyncEngine, migrate_first: bool) -> AsyncIterator[AsyncEngine]:
    """The database while the process runs: migrated first if asked, its SQLite file
    checkpointed off the event loop, its pooled connections closed at the end."""
    try:
        if migrate_first:
            await migrate(engine)
            log.info("database migrated", extra={"database": engine.url.render_as_string()})
        async with checkpointing(engine):
            yield engine
    finally:
        await engine.dispose()


async def running_broker(broker: MessageBroker | None, *outlived_by: object) -> AsyncIterator[None]:
    """The broker connected; closed (the message in hand finished) before ``outlived_by``.
    None: this process runs no broker through this resource."""
    if broker is None:
        yield
        return
    await broker.start()
    try:
        yield
    finally:
        await broker.close()


async def closing(client: Closable | None, *outlived_by: object) -> AsyncIterator[None]:
    """``client`` closed at shutdown (None: this process has no such client)."""
    try:
        yield
    finally:
        if client is not None:
            await client.close()


async def running_webhook_outbox(
    outbox: WebhookOutbox, enabled: bool, *outlived_by: object
) -> AsyncIterator[None]:
    """The webhook outbox connected while the process runs, if anyone subscribed."""
    if not enabled:
        yield
        return
    await outbox.start()
    try:
        yield
    finally:
        await outbox.close()


# How long a stopping relay's pass under way may take (RabbitMQ down: a publish timeout).
RELAY_STOP_GRACE_S = 10.0


async def running_webhook_relay(
    relay: WebhookRelay | None, enabled: bool, *outlived_by: object
) -> AsyncIterator[None]:
    """The relay of recorded webhook events, while the process runs, if anyone subscribed
    (None: this process records none). What it leaves waits in the database."""
    if relay is None or not enabled:
        yield
        return
    running = asyncio.create_task(relay.run())
    try:
        yield
    finally:
        relay.stop()
        try:
            async with asyncio.timeout(RELAY_STOP_GRACE_S):
                await running
        except TimeoutError:
            log.warning("webhook relay: pass cut short; its events wait in the database")
