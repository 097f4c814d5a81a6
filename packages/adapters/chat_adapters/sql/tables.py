"""The schema as SQLAlchemy Core tables: what the repositories query and Alembic compares to.

The migrations in ``migrations/versions`` are the source of truth for the database;
this module must describe the same schema.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.types import TypeDecorator

# Named constraints, so that SQLite batch migrations can find and alter them later.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID_LENGTH = 64


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL keeps the zone (timestamptz); SQLite stores text without one, so values
    are converted to UTC on the way in and tagged as UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the storage keeps timezone-aware UTC only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = MetaData(naming_convention=NAMING_CONVENTION)

users = Table(
    "users",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    # Callers store it lower-case, so a plain unique index makes it unique without case.
    Column("username", String(32), nullable=False, unique=True),
    Column("display_name", String(64), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    # NULL while the account is active.
    Column("deactivated_at", UTCDateTime(), nullable=True),
    # Tokens of an older generation are refused (deactivation, password reset).
    Column("session_generation", Integer, nullable=False, default=0, server_default="0"),
)

rooms = Table(
    "rooms",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    # The last seq handed out; incremented under the row lock, see allocate_seq.
    Column("last_seq", Integer, nullable=False, default=0, server_default="0"),
    # Unique per pair of users for direct rooms; NULL (never equal) for groups.
    Column("direct_key", String(2 * ID_LENGTH + 1), nullable=True, unique=True),
    # Time of the last stored message; NULL until the first one (then creation time counts).
    Column("last_activity_at", UTCDateTime(), nullable=True),
)

memberships = Table(
    "memberships",
    metadata,
    Column(
        "room_id",
        String(ID_LENGTH),
        ForeignKey("rooms.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "user_id",
        String(ID_LENGTH),
        ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("role", String(16), nullable=False),
    Column("joined_at", UTCDateTime(), nullable=False),
    Column("delivered_seq", Integer, nullable=False, default=0, server_default="0"),
    Column("read_seq", Integer, nullable=False, default=0, server_default="0"),
    # "Rooms of a user" is the hot lookup (socket connect, room list).
    Index("ix_memberships_user_id", "user_id"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column(
        "room_id",
        String(ID_LENGTH),
        ForeignKey("rooms.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("seq", Integer, nullable=False),
    Column("sender_id", String(ID_LENGTH), ForeignKey("users.id"), nullable=False),
    Column("body", Text, nullable=False),
    Column("client_msg_id", String(64), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("edited_at", UTCDateTime(), nullable=True),
    Column("deleted", Boolean, nullable=False, default=False, server_default=false()),
    # The last line of defence of "no duplicate seq"; also the index of every page query.
    UniqueConstraint("room_id", "seq", name="uq_messages_room_id_seq"),
    # Retention (`chat prune`) finds the oldest messages without reading the table.
    Index("ix_messages_created_at", "created_at"),
)

# Whom the owner removed from a room: only the owner may add them back. A user who left
# by themselves has no row here. Dropped when the owner adds the user back.
room_removals = Table(
    "room_removals",
    metadata,
    Column(
        "room_id",
        String(ID_LENGTH),
        ForeignKey("rooms.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "user_id",
        String(ID_LENGTH),
        ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("removed_at", UTCDateTime(), nullable=False),
)

# Who refuses whom (one way): see chat_domain.usecases.blocks.
user_blocks = Table(
    "user_blocks",
    metadata,
    Column(
        "blocker_id",
        String(ID_LENGTH),
        ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "blocked_id",
        String(ID_LENGTH),
        ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("created_at", UTCDateTime(), nullable=False),
    # "Who blocks this user" (socket connect, adding a user): the primary key serves the
    # other direction.
    Index("ix_user_blocks_blocked_id", "blocked_id"),
)

# The server API's keys (chat_domain.usecases.api_keys): only a SHA-256 of each key is kept.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("name", String(100), nullable=False),
    # Each call finds its key by this: unique, so indexed.
    Column("key_hash", String(64), nullable=False, unique=True),
    # The scopes, space-separated ("rooms:write messages:write").
    Column("scopes", String(255), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

# The transactional outbox of webhook events (chat_domain.ports.webhooks): written in the
# transaction of the change each describes, relayed in position order to the webhook
# outbox, then deleted. INTEGER on SQLite, so that the column is the rowid.
WEBHOOK_POSITION = BigInteger().with_variant(Integer(), "sqlite")
webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column("position", WEBHOOK_POSITION, primary_key=True, autoincrement=True),
    Column("event_id", String(128), nullable=False),
    Column("type", String(32), nullable=False),
    Column("room_id", String(ID_LENGTH), nullable=False),
    # The event's time (whole seconds since the epoch) and its data (JSON): the body.
    Column("timestamp", BigInteger, nullable=False),
    Column("data", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    # Positions never reused, even those of deleted rows (SQLite's AUTOINCREMENT).
    sqlite_autoincrement=True,
)
