"""Storing a batch of new messages in one PostgreSQL statement, its own transaction.

The port's default takes a unit of work of two statements: with asyncpg, four round trips
(BEGIN, the seq UPDATE, the INSERT, COMMIT), which were 36% of the worker's samples at 200
messages/s. PostgreSQL runs the same work as one statement of data-modifying CTEs, and a
single statement in autocommit is a transaction by itself: one round trip, all or nothing.
It is asked of the driver itself (``driver_lane``): through SQLAlchemy Core the same call
took ~540 µs of the worker's CPU, on asyncpg ~290 µs.

The arrays go in as parameters (``unnest``), so the statement's text does not depend on
the batch's size and asyncpg prepares it once per connection. SQLite has no
data-modifying CTEs; it keeps the port's default, where a round trip is a function call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from chat_domain.entities import Message
from chat_domain.errors import NotFound
from chat_domain.ports.storage import numbered_in_order

STORE_NEW_MESSAGES = """
WITH counts AS (
    SELECT c.room_id, c.n
    FROM unnest(CAST($1 AS varchar[]), CAST($2 AS integer[])) AS c(room_id, n)
    -- All or nothing: with a room missing there is no row, so nothing below changes.
    WHERE (SELECT count(*) FROM rooms WHERE rooms.id = ANY(CAST($1 AS varchar[])))
        = cardinality(CAST($1 AS varchar[]))
),
taken AS (
    -- Row locks until the statement commits: concurrent stores to one room queue here,
    -- and the second sees the first's last_seq (READ COMMITTED re-reads a locked row).
    UPDATE rooms
    SET last_seq = rooms.last_seq + counts.n,
        -- Never backwards, should clocks disagree across nodes (GREATEST skips NULL).
        last_activity_at = GREATEST(rooms.last_activity_at, CAST($3 AS timestamptz))
    FROM counts
    WHERE rooms.id = counts.room_id
    RETURNING rooms.id, rooms.last_seq - counts.n + 1 AS first_seq,
        (SELECT string_agg(m.user_id, ',') FROM memberships AS m WHERE m.room_id = rooms.id)
            AS member_ids
),
stored AS (
    INSERT INTO messages (id, room_id, seq, sender_id, body, client_msg_id, created_at)
    SELECT b.id, b.room_id, taken.first_seq + b.ordinal, b.sender_id, b.body,
        b.client_msg_id, b.created_at
    FROM unnest(
        CAST($4 AS varchar[]), CAST($5 AS varchar[]),
        CAST($6 AS integer[]), CAST($7 AS varchar[]),
        CAST($8 AS text[]), CAST($9 AS varchar[]),
        CAST($10 AS timestamptz[])
    ) AS b(id, room_id, ordinal, sender_id, body, client_msg_id, created_at)
    JOIN taken ON taken.id = b.room_id
)
SELECT id, first_seq, member_ids FROM taken
"""


def store_new_messages_parameters(
    by_room: Mapping[str, Sequence[Message]], now: datetime
) -> tuple[Any, ...]:
    """The statement's parameters, ``$1`` to ``$10``: one entry per room (its id, its count
    of messages), the rooms' new activity time ``now``, then one entry per message with its
    place (``ordinal``) in its room's part of the batch."""
    batch = [(ordinal, m) for ms in by_room.values() for ordinal, m in enumerate(ms)]
    return (
        list(by_room),
        [len(ms) for ms in by_room.values()],
        now,
        [m.id for _, m in batch],
        [m.room_id for _, m in batch],
        [ordinal for ordinal, _ in batch],
        [m.sender_id for _, m in batch],
        [m.body for _, m in batch],
        [m.client_msg_id for _, m in batch],
        [m.created_at.astimezone(UTC) for _, m in batch],
    )


def stored_batch(
    by_room: Mapping[str, Sequence[Message]], rows: Sequence[Any]
) -> tuple[list[Message], dict[str, list[str]]]:
    """What the port returns, from the statement's rows (one per room: id, first_seq,
    member_ids)."""
    if len(rows) != len(by_room):
        raise NotFound("room not found")
    firsts = {row[0]: int(row[1]) for row in rows}
    members = {row[0]: row[2].split(",") if row[2] else [] for row in rows}
    return numbered_in_order(by_room, firsts), members
