"""Settings from ``CHAT_*`` environment variables (and a ``.env`` file), with embedded defaults."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_PRODUCTION_KEY_LENGTH = 32
DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///./var/chat.db"


class Settings(BaseSettings):
    """Every knob of the service; each field is the variable ``CHAT_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="CHAT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Literal["development", "production"] = "development"
    log_level: str = "INFO"
    # "json": one JSON object per line (for log shippers); "text" for people.
    log_format: Literal["text", "json"] = "text"

    broker: Literal["memory", "rabbitmq"] = "memory"
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    rabbitmq_prefix: str = "chat"
    rabbitmq_partitions: int = Field(default=8, ge=1, le=256)
    rabbitmq_max_attempts: int = Field(default=5, ge=1)
    broker_publish_timeout: float = Field(default=5.0, gt=0)

    socketio_manager: Literal["local", "redis"] = "local"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_channel: str = "chat-socketio"
    # Publish an event for users only to the nodes holding their sockets (true), or to
    # every node (false: as before targeted delivery; for a rolling upgrade, see
    # docs/scaling.md). Either way a server node also listens on its own channel.
    socketio_targeted_delivery: bool = True

    database_url: str = DEFAULT_SQLITE_URL
    # PostgreSQL connections each process keeps open (SQLite uses one). Beyond it, up to
    # as many again are opened for a burst and closed after: sized so that a busy node
    # does not open and close a connection per request.
    database_pool_size: int = Field(default=10, ge=1)
    # Apply migrations when a server starts: on by default for SQLite (embedded),
    # off for PostgreSQL, where `chat migrate` runs once before the fleet starts.
    auto_migrate: bool | None = None

    # None means: true with the in-memory broker, false with RabbitMQ.
    embedded_worker: bool | None = None

    secret_key: SecretStr | None = None
    token_ttl_seconds: int = Field(default=12 * 3600, ge=60)

    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    cors_origins: list[str] = Field(default_factory=list)

    # --- limits on what a client controls (see docs/security.md) ----------------------
    socketio_max_packet_bytes: int = Field(default=128 * 1024, ge=16 * 1024)
    max_sockets_per_user: int = Field(default=32, ge=1)
    max_members_per_room: int = Field(default=1000, ge=2)
    max_rooms_per_user: int = Field(default=1000, ge=1)
    # Rate limits, token buckets (0 turns a rule off). "memory" counts per node; "redis"
    # across nodes; None follows CHAT_SOCKETIO_MANAGER (several nodes share Redis anyway).
    rate_limit_backend: Literal["memory", "redis"] | None = None
    rate_send_per_second: float = Field(default=50.0, ge=0)
    rate_send_burst: int = Field(default=1000, ge=0)
    rate_login_per_minute: float = Field(default=10.0, ge=0)  # per username: brute force
    rate_login_burst: int = Field(default=10, ge=0)
    rate_auth_per_address_per_minute: float = Field(default=1200.0, ge=0)
    rate_auth_per_address_burst: int = Field(default=600, ge=0)
    rate_connect_per_minute: float = Field(default=120.0, ge=0)  # per user
    rate_connect_burst: int = Field(default=60, ge=0)
    # Behind N reverse proxies, the client's address is the N-th from the right of
    # X-Forwarded-For; 0 trusts no header (the peer address is the client's).
    trusted_proxy_hops: int = Field(default=0, ge=0, le=10)

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
