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

from chat_adapters.webhooks.signing import secret_key as webhook_secret_key

MIN_PRODUCTION_KEY_LENGTH = 32
MIN_SEED_KEY_LENGTH = 16
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
    rabbitmq_ack_delay_seconds: float = Field(
        0.0,
        ge=0,
        le=5,
        description="Seconds a worker may hold a partition's stored messages before "
        "acknowledging them together (0, the default: each batch at once). About a quarter "
        "less RabbitMQ CPU per message at a modest rate, at a price: a worker killed "
        "meanwhile has them delivered again, so members get again messages older than "
        "ones they already have (stored once; clients drop them by id).",
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
    worker_balance: Literal["load", "count"] = Field(
        "load",
        description="How workers split the partitions: `load` balances the messages each "
        "handles (measured per partition, see docs/scaling.md), `count` gives each the same "
        "number of partitions by rendezvous hashing. Every worker must use the same.",
    )
    worker_balance_tolerance: float = Field(
        0.15,
        gt=0,
        lt=1,
        description="With `load` balancing, how far the workers' loads may spread "
        "((busiest - idlest) / busiest) before partitions move; a move brings the spread "
        "under half of it.",
    )
    worker_balance_seconds: float = Field(
        10.0,
        gt=0,
        description="With `load` balancing, the loads are re-measured (and partitions moved "
        "for load) at most this often, over at least 500 messages; a worker joining or "
        "leaving moves partitions at once.",
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

    # --- webhooks (docs/webhooks.md) ------------------------------------------------
    # Subscriber URLs, comma-separated; empty: no webhooks, no outbox traffic.
    webhook_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Webhook subscriber URLs (http/https), comma-separated or a JSON list; "
        "every event goes to each. Empty: no webhooks.",
        json_schema_extra=_example("https://push.example.com/chat-events"),
    )
    # The Standard Webhooks signing secret: `whsec_` + base64 of 16+ random bytes.
    webhook_secret: SecretStr | None = Field(
        None,
        description="Secret the webhooks are signed with: `whsec_` and base64 of 16+ random "
        "bytes (Standard Webhooks). Required with `CHAT_WEBHOOK_URLS`.",
        json_schema_extra=_example("whsec_<base64 of 32 random bytes>"),
    )
    # Seconds one POST may take in all before it counts as failed.
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, description="Seconds one webhook POST may take before it counts as failed."
    )
    # POSTs of one event to one endpoint before it is dead-lettered.
    webhook_max_attempts: int = Field(
        8, ge=1, description="Attempts to deliver an event to an endpoint before dead-lettering it."
    )
    # Seconds before the first retry; doubles each attempt up to the maximum.
    webhook_retry_base_seconds: float = Field(
        1.0, ge=0, description="Seconds before a webhook's first retry; doubles each attempt."
    )
    webhook_retry_max_seconds: float = Field(
        60.0, ge=0, description="The longest pause, in seconds, between two webhook attempts."
    )
    # Outbox messages (each a stored batch's events) a dispatcher holds at once: prefetch.
    webhook_prefetch: int = Field(
        64,
        ge=1,
        description="Outbox messages (each the events of one stored batch, or up to 100 "
        "relayed edit, delete and membership events) the webhook dispatcher works on at "
        "once, across rooms (one event at a time per room).",
    )
    # Edits, deletes and membership changes record their events in the database; each
    # server's relay moves them at once, and polls for leftovers at this interval.
    webhook_relay_interval_seconds: float = Field(
        1.0,
        gt=0,
        description="Seconds between two looks of a server's webhook relay for edit, delete "
        "and membership events still in the database (another server's, or left while "
        "RabbitMQ was down); those of its own requests it relays at once.",
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
    socketio_targeted_delivery: bool = Field(
        True,
        description="Publish a user's events only to the nodes holding their sockets (false: "
        "to every node, for a rolling upgrade from a version without it; docs/scaling.md).",
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
    # An operator's `chat users deactivate` / `reset-password` reaches the servers through
    # the database only: each node rereads a user it trusts at most this often.
    session_recheck_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Seconds within which a deactivation or password reset ends the user's "
        "tokens and disconnects their sockets on every node (how long a node trusts a user "
        "it read, and how often it rechecks its sockets).",
    )

    # --- who vouches for users: our accounts, the app, or both (docs/app-integration.md)
    auth_mode: Literal["accounts", "app", "both"] = Field(
        "accounts",
        description="Whose tokens are accepted: `accounts` (ours, from `/auth/login`), `app` "
        "(the app's: its users need no account here), or `both`.",
        json_schema_extra=_example("app"),
    )
    app_token_secret: SecretStr | None = Field(
        None,
        description="HS256 secret shared with the app (32+ characters), to check its tokens; "
        "or set `CHAT_APP_JWKS_URL` or `CHAT_APP_JWKS_FILE` instead.",
        json_schema_extra=_example("<48 random characters>"),
    )
    app_jwks_url: str | None = Field(
        None,
        description="URL of the app's JSON Web Key Set: its RS256/ES256 tokens are checked "
        "against it (cached; fetched again for an unknown `kid`).",
        json_schema_extra=_example("https://app.example.com/.well-known/jwks.json"),
    )
    app_jwks_file: str | None = Field(
        None,
        description="Path of a JSON Web Key Set file, instead of a URL (read again for an "
        "unknown `kid`: replacing the file rotates the keys).",
        json_schema_extra=_example("/etc/chat/app-jwks.json"),
    )
    app_token_issuer: str | None = Field(
        None,
        description="The `iss` every app token must carry (required with app tokens).",
        json_schema_extra=_example("https://app.example.com"),
    )
    app_token_audience: str | None = Field(
        None,
        description="The `aud` every app token must carry (required with app tokens).",
        json_schema_extra=_example("chat"),
    )
    app_token_leeway_seconds: int = Field(
        30, ge=0, le=600, description="Clock skew allowed on an app token's `exp`, in seconds."
    )
    app_token_name_claim: str = Field(
        "name",
        min_length=1,
        description="The app token's claim that carries the user's display name.",
    )
    app_jwks_cache_seconds: float = Field(
        300.0, gt=0, description="Seconds the app's key set is kept before it is fetched again."
    )
    app_jwks_min_refresh_seconds: float = Field(
        30.0,
        ge=0,
        description="Least seconds between two fetches of the key set (a token with an "
        "unknown `kid` fetches it at once, but not more often than this).",
    )
    rate_server_api_per_second: float = Field(
        100.0, ge=0, description="Server API calls per API key and second (0: off)."
    )
    rate_server_api_burst: int = Field(
        200, ge=0, description="Server API calls an API key may make at once."
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

    # --- transport bounds, before and after login (see docs/security.md) ---------------
    socket_pending_per_address: int = Field(
        20,
        ge=1,
        description="Sockets not yet logged in (no accepted connect packet) per client "
        "address; past it the handshake answers 429.",
    )
    socket_pending_max: int = Field(
        1000, ge=1, description="Sockets not yet logged in on the node; past it 503."
    )
    socket_pending_seconds: float = Field(
        10.0, gt=0, description="Seconds a socket may take to log in before it is closed."
    )
    socket_send_buffer_bytes: int = Field(
        1024 * 1024,
        ge=16 * 1024,
        description="Bytes a socket's outbound queue may hold; past it the socket is "
        "disconnected (the client reconnects and syncs).",
    )
    socket_send_timeout_seconds: float = Field(
        20.0,
        gt=0,
        description="Seconds a queued frame may wait for the client to read it; past it the "
        "socket is disconnected.",
    )
    ops_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="When set, a server serves `/healthz`, `/readyz` and `/metrics` only on "
        "this port, and its public listener answers 404 for them.",
        json_schema_extra=_example("9000"),
    )
    ops_host: str = Field(
        "127.0.0.1", description="Address of a server's operations listener (`CHAT_OPS_PORT`)."
    )

    # --- the seed's clients (docs/seed-compat.md) -------------------------------------
    seed_compat: Literal["off", "open", "api-key"] = Field(
        "off",
        description="Serve the API of the system this one grew from (its token, send and "
        "client routes, and its socket events) beside ours: `open` issues its tokens to "
        "anyone who asks, `api-key` only to callers with an API key.",
    )
    seed_token_key: SecretStr | None = Field(
        None,
        description="With `CHAT_SEED_COMPAT=api-key`, a shared secret a caller may send as "
        "`X-API-Key` to get a seed token or list a room's clients, beside the server API's "
        "keys (`users:write`, `messages:read`); 16+ characters. Unset: those keys only.",
        json_schema_extra=_example("<32 random characters>"),
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

    @field_validator("app_jwks_url")
    @classmethod
    def _jwks_scheme(cls, value: str | None) -> str | None:
        return None if value is None else _require_scheme(value, ("https", "http"))

    @field_validator("cors_origins", "webhook_urls", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
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

    @field_validator("webhook_urls")
    @classmethod
    def _webhook_urls_are_http(cls, urls: list[str]) -> list[str]:
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"{url!r} is not an http(s) URL")
        return urls

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret_format(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            webhook_secret_key(value.get_secret_value())
        return value

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
        seed_key = self.seed_token_key.get_secret_value() if self.seed_token_key else None
        if seed_key is not None and len(seed_key) < MIN_SEED_KEY_LENGTH:
            raise ValueError(
                f"CHAT_SEED_TOKEN_KEY must be at least {MIN_SEED_KEY_LENGTH} characters"
            )
        if self.auth_mode != "accounts":
            self._check_app_tokens()
        if self.webhook_urls and self.webhook_secret is None:
            raise ValueError("CHAT_WEBHOOK_URLS needs CHAT_WEBHOOK_SECRET (whsec_ and base64)")
        if self.webhook_retry_max_seconds < self.webhook_retry_base_seconds:
            raise ValueError(
                "CHAT_WEBHOOK_RETRY_MAX_SECONDS must be at least CHAT_WEBHOOK_RETRY_BASE_SECONDS"
            )
        if self.env == "production":
            key = self.secret_key.get_secret_value() if self.secret_key else ""
            if len(key) < MIN_PRODUCTION_KEY_LENGTH:
                raise ValueError(
                    f"CHAT_ENV=production needs CHAT_SECRET_KEY of at least "
                    f"{MIN_PRODUCTION_KEY_LENGTH} characters"
                )
        return self

    def _check_app_tokens(self) -> None:
        sources = [
            name
            for name, value in (
                ("CHAT_APP_TOKEN_SECRET", self.app_token_secret),
                ("CHAT_APP_JWKS_URL", self.app_jwks_url),
                ("CHAT_APP_JWKS_FILE", self.app_jwks_file),
            )
            if value
        ]
        if len(sources) != 1:
            raise ValueError(
                f"CHAT_AUTH_MODE={self.auth_mode} needs exactly one of CHAT_APP_TOKEN_SECRET, "
                f"CHAT_APP_JWKS_URL, CHAT_APP_JWKS_FILE (set: {', '.join(sources) or 'none'})"
            )
        secret = self.app_token_secret.get_secret_value() if self.app_token_secret else None
        if secret is not None and len(secret) < MIN_PRODUCTION_KEY_LENGTH:
            raise ValueError(
                f"CHAT_APP_TOKEN_SECRET must be at least {MIN_PRODUCTION_KEY_LENGTH} characters"
            )
        if not self.app_token_issuer or not self.app_token_audience:
            raise ValueError(
                f"CHAT_AUTH_MODE={self.auth_mode} needs CHAT_APP_TOKEN_ISSUER and "
                "CHAT_APP_TOKEN_AUDIENCE: an app token is checked against both"
            )

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
