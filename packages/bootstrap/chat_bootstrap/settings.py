"""Settings from ``CHAT_*`` environment variables (and a ``.env`` file), with embedded defaults.

Every field is the variable ``CHAT_<NAME>`` and carries its own description and, where the
default does not show one, an example: docs/configuration.md and .env.example are generated
from them (``python -m chat_bootstrap.settings_docs``), and a configuration error quotes
them (``chat_bootstrap.settings_errors``).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_PRODUCTION_KEY_LENGTH = 32
DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///./var/chat.db"
ENV_PREFIX = "CHAT_"
DATABASE_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _example(value: str) -> dict[str, Any]:
    return {"example": value}


def _require_scheme(url: str, schemes: tuple[str, ...]) -> str:
    scheme = urlsplit(url).scheme
    if scheme not in schemes:
        raise ValueError(
            f"scheme {scheme + '://' if scheme else '(none)'} is not supported; "
            f"use {' or '.join(s + '://' for s in schemes)}"
        )
    return url


class Settings(BaseSettings):
    """Every knob of the service; each field is the variable ``CHAT_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- the process ----------------------------------------------------------------
    env: Literal["development", "production"] = Field(
        "development",
        description="`production` refuses to start without a strong `CHAT_SECRET_KEY`.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="The lowest level written to the log."
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`json`: one JSON object per line (for log shippers); `text` for people.",
    )

    # --- the broker -----------------------------------------------------------------
    broker: Literal["memory", "rabbitmq"] = Field(
        "memory", description="Where accepted messages wait for a worker: in-process or RabbitMQ."
    )
    rabbitmq_url: str = Field(
        "amqp://guest:guest@127.0.0.1:5672/",
        description="RabbitMQ's AMQP URL (`amqp://`, `amqps://`).",
    )
    rabbitmq_prefix: str = Field(
        "chat",
        min_length=1,
        description="Prefix of every exchange and queue name; servers and workers must agree.",
    )
    # Changing it on a live system: docs/scaling.md.
    rabbitmq_partitions: int = Field(
        32,
        ge=1,
        le=256,
        description="Queues the rooms' messages are spread over (crc32 of the room id), the "
        "most workers that can share the work; the same on every process.",
        json_schema_extra=_example("64"),
    )
    rabbitmq_max_attempts: int = Field(
        5, ge=1, description="Deliveries of a failing message before it is dead-lettered."
    )
    broker_publish_timeout: float = Field(
        5.0,
        gt=0,
        description="Seconds a send waits for the broker's confirm before answering 503.",
    )

    worker_linger_seconds: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Seconds an idle `chat worker` waits for more messages before storing "
        "what arrived in one transaction (0: at once): fewer transactions at a modest rate, "
        "for at most that much more delivery latency.",
    )
    worker_lease_seconds: float = Field(
        4.0,
        gt=0,
        description="Seconds a worker that stopped heartbeating keeps its partitions (after a "
        "kill -9, the others take them over then); workers heartbeat four times per lease.",
    )
    worker_ops_host: str = Field(
        "127.0.0.1",
        description="Address a `chat worker` serves `/healthz`, `/readyz` and `/metrics` on.",
        json_schema_extra=_example("0.0.0.0"),
    )
    worker_ops_port: int = Field(
        9100,
        ge=0,
        le=65535,
        description="Port of a `chat worker`'s operations endpoints (0: none).",
    )

    # --- realtime -------------------------------------------------------------------
    socketio_manager: Literal["local", "redis"] = Field(
        "local", description="`redis` to share socket.io events between several nodes."
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", description="Redis URL (`redis://`, `rediss://`, `unix://`)."
    )
    redis_channel: str = Field(
        "chat-socketio",
        min_length=1,
        description="Pub/sub channel and key prefix in Redis; servers and workers must agree.",
    )

    # --- storage --------------------------------------------------------------------
    database_url: str = Field(
        DEFAULT_SQLITE_URL,
        description="SQLAlchemy URL: `sqlite+aiosqlite:///path` or `postgresql+asyncpg://...`.",
        json_schema_extra=_example("postgresql+asyncpg://chat@db.internal:5432/chat"),
    )
    # Beyond it, up to as many again are opened for a burst and closed after: sized so that
    # a busy node does not open and close a connection per request.
    database_pool_size: int = Field(
        10, ge=1, description="PostgreSQL connections each process keeps open (SQLite uses one)."
    )
    auto_migrate: bool | None = Field(
        None,
        description="Apply migrations when a server starts. Unset: on for SQLite, off for "
        "PostgreSQL (run `chat migrate` once before the fleet starts).",
        json_schema_extra=_example("false"),
    )
    embedded_worker: bool | None = Field(
        None,
        description="Run the consumer inside the server. Unset: true with the memory broker, "
        "false with RabbitMQ.",
        json_schema_extra=_example("false"),
    )

    retention_days: int = Field(
        0,
        ge=0,
        description="`chat prune` erases the bodies of messages older than this many days "
        "(0: keep everything).",
        json_schema_extra=_example("365"),
    )

    # --- tokens ---------------------------------------------------------------------
    secret_key: SecretStr | None = Field(
        None,
        description="Token signing key, 32+ characters. Unset in development: generated once "
        "into `./var/secret.key`.",
        json_schema_extra=_example("<48 random characters>"),
    )
    token_ttl_seconds: int = Field(
        12 * 3600, ge=60, description="Seconds an access token stays valid."
    )

    # --- limits on what a client controls (see docs/security.md) ----------------------
    max_body_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest REST request body, in bytes (413 beyond)."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Web origins allowed to call the API and open sockets, comma-separated "
        "(or a JSON list); empty: same origin only; `*`: any.",
        json_schema_extra=_example("https://chat.example.com,https://app.example.com"),
    )
    socketio_max_packet_bytes: int = Field(
        128 * 1024,
        ge=16 * 1024,
        description="Largest socket.io packet, in bytes; a bigger one closes that socket.",
    )
    max_sockets_per_user: int = Field(
        32, ge=1, description="Sockets one user may hold on one node."
    )
    max_members_per_room: int = Field(1000, ge=2, description="Members a room may have.")
    max_rooms_per_user: int = Field(
        1000, ge=1, description="Rooms a user may be in when creating or opening one."
    )
    rate_limit_backend: Literal["memory", "redis"] | None = Field(
        None,
        description="Where rate-limit buckets live: per node (`memory`) or across nodes "
        "(`redis`). Unset: follows `CHAT_SOCKETIO_MANAGER`.",
        json_schema_extra=_example("redis"),
    )
    rate_send_per_second: float = Field(
        50.0, ge=0, description="Message sends per user and second (REST and socket.io; 0: off)."
    )
    rate_send_burst: int = Field(
        1000, ge=0, description="Sends a user may make at once (edits are charged to it too)."
    )
    rate_typing_per_second: float = Field(
        2.0, ge=0, description="`typing` events per user and second, all rooms together."
    )
    rate_typing_burst: int = Field(10, ge=0, description="`typing` events a user may send at once.")
    rate_receipt_per_second: float = Field(
        10.0, ge=0, description="`delivered` and `read` reports per user and second."
    )
    rate_receipt_burst: int = Field(
        100, ge=0, description="`delivered` and `read` reports a user may send at once."
    )
    # Per username AND client address (a success clears them): brute force is slowed, and a
    # stranger's guesses never lock the owner out. Registrations: per username.
    rate_login_per_minute: float = Field(
        10.0,
        ge=0,
        description="Login attempts per username and client address and minute; a successful "
        "login clears them (0: off).",
    )
    rate_login_burst: int = Field(
        10, ge=0, description="Login attempts per username and client address at once."
    )
    rate_auth_per_address_per_minute: float = Field(
        1200.0, ge=0, description="Logins and registrations per client address and minute."
    )
    rate_auth_per_address_burst: int = Field(
        600, ge=0, description="Logins and registrations per client address at once."
    )
    registration_concurrency: int = Field(
        1, ge=1, description="Registrations hashing a password at once, per node."
    )
    registration_queue: int = Field(
        64,
        ge=0,
        description="Registrations that may wait for a turn, per node; beyond, 429 at once. "
        "Logins never wait behind them.",
    )
    rate_connect_per_minute: float = Field(
        120.0, ge=0, description="Socket connects per user and minute."
    )
    rate_connect_burst: int = Field(60, ge=0, description="Socket connects per user at once.")
    trusted_proxy_hops: int = Field(
        0,
        ge=0,
        le=10,
        description="Reverse proxies in front of the servers: the client's address is that "
        "many entries from the right of `X-Forwarded-For` (0 trusts no header).",
        json_schema_extra=_example("1"),
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        # `info` is as good as `INFO`; a wrong level is reported as it was written.
        if isinstance(value, str) and value.upper() in LOG_LEVELS:
            return value.upper()
        return value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str) -> str:
        return _require_scheme(value, DATABASE_SCHEMES)

    @field_validator("rabbitmq_url")
    @classmethod
    def _amqp_scheme(cls, value: str) -> str:
        return _require_scheme(value, ("amqp", "amqps"))

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        return _require_scheme(value, ("redis", "rediss", "unix"))

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [origin.strip() for origin in text.split(",") if origin.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins_are_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin == "*":
                continue
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
                raise ValueError(
                    f"{origin!r} is not an origin: scheme and host only, like https://a.example"
                )
        return origins

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if self.embedded_worker is None:
            self.embedded_worker = self.broker == "memory"
        if self.auto_migrate is None:
            self.auto_migrate = self.database_url.startswith("sqlite")
        if self.rate_limit_backend is None:
            self.rate_limit_backend = "redis" if self.socketio_manager == "redis" else "memory"
        if self.broker == "memory" and not self.embedded_worker:
            raise ValueError(
                "CHAT_EMBEDDED_WORKER=false needs CHAT_BROKER=rabbitmq: the in-memory broker "
                "lives in the server process, so no other process could consume it"
            )
        if self.env == "production":
            key = self.secret_key.get_secret_value() if self.secret_key else ""
            if len(key) < MIN_PRODUCTION_KEY_LENGTH:
                raise ValueError(
                    f"CHAT_ENV=production needs CHAT_SECRET_KEY of at least "
                    f"{MIN_PRODUCTION_KEY_LENGTH} characters"
                )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def signing_key(self) -> str:
        """The token signing key. In development without one, a key generated once and kept
        under ./var/, so restarting the server does not log everybody out."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = Path("var/secret.key")
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()


def variable(field: str) -> str:
    """The environment variable of a settings field."""
    return f"{ENV_PREFIX}{field.upper()}"
