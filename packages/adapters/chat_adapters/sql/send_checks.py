"""A send's membership check on PostgreSQL, asked of the pooled asyncpg connection itself.

Every send asks it, so its cost is a server's: through SQLAlchemy Core it took ~600 µs of
CPU and 15% of a cluster server's samples at 200 messages/s; on the driver's lane
(``driver_lane``) it takes ~250-390 µs, of which asyncpg answering the prepared statement
is ~100 µs.

It answers two booleans. The rare retry whose message is stored already is then read
whole by the repository, where the columns' types are SQLAlchemy's to convert.
"""

from __future__ import annotations

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from chat_adapters.sql.driver_lane import on_driver

# asyncpg prepares it once per connection and caches it by its text.
SEND_CHECK = """
SELECT
    EXISTS (SELECT 1 FROM memberships WHERE room_id = $1 AND user_id = $2),
    EXISTS (SELECT 1 FROM messages WHERE id = $3 AND room_id = $1)
"""


async def check_send(
    engine: AsyncEngine, room_id: str, sender_id: str, message_id: str
) -> tuple[bool, bool]:
    """(the sender is a member of the room, a message ``message_id`` of the room is stored).

    Runs in autocommit: it sees what is committed, as a reading unit of work does. If the
    pooled connection turns out dead (the database restarted), the check runs again once
    on a fresh one; a database that cannot be reached raises ``Unavailable``.
    """

    async def run(driver: asyncpg.Connection) -> tuple[bool, bool]:
        record = await driver.fetchrow(SEND_CHECK, room_id, sender_id, message_id)
        assert record is not None  # one row, always
        return bool(record[0]), bool(record[1])

    return await on_driver(engine, run)
