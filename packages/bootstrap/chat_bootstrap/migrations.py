"""`chat migrate`: apply the database migrations once, before servers and workers start."""

from __future__ import annotations

import logging

from chat_adapters.sql.migrate import migrate
from chat_bootstrap.container import build_container
from chat_bootstrap.settings import Settings

log = logging.getLogger("chat.migrate")


async def migrate_database(settings: Settings) -> None:
    # The container's engine, configured as servers and workers configure theirs.
    engine = build_container(settings, role="migrate").engine()
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    log.info("database is at the latest migration")
