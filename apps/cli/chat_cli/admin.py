"""Operators' commands: the same use cases as the API, run against the configured database.

Each command builds the process's container (so it sees exactly the adapters a server
would), applies the migrations where a server would (``CHAT_AUTO_MIGRATE``), and turns
what can go wrong into an ``AdminError``: one line that says what to do.
"""

from __future__ import annotations

import getpass
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

from chat_bootstrap.container import Container, build_container
from chat_bootstrap.settings import Settings, variable
from chat_domain.entities import ApiKey, User
from chat_domain.errors import DomainError, Unavailable
from chat_domain.ports.broker import DeadLetter
from chat_domain.ports.storage import RoomListing

T = TypeVar("T")
MASK = "****"


class AdminError(Exception):
    """A command failed for a reason the operator can act on."""


def masked_url(url: str) -> str:
    """``url`` with its password replaced, for messages and `chat config`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:{MASK}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def effective_configuration(settings: Settings) -> list[tuple[str, str]]:
    """Every setting as (variable, value), secrets and URL passwords masked."""
    shown = []
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            text = MASK
        elif value is None and name == "secret_key":
            text = "(unset: generated into ./var/secret.key)"
        elif isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, list):
            text = ",".join(value)
        elif name.endswith("_url") and value is not None:
            text = masked_url(str(value))
        else:
            text = "" if value is None else str(value)
        shown.append((variable(name), text))
    return shown


def read_password() -> str:
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise AdminError("the two passwords differ; nothing was changed")
    return first


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Container]:
    """The container with only its database open (migrated first where a server would
    migrate it, CHAT_AUTO_MIGRATE): no broker, Redis or sockets to reach."""
    container = build_container(settings, role="admin")
    await _awaited(container.database.init())
    try:
        yield container
    finally:
        await _awaited(container.database.shutdown())


async def _awaited(result: Awaitable[object] | None) -> None:
    if result is not None:  # an async Resource's init and shutdown return awaitables
        await result


async def _with_database(settings: Settings, work: Callable[[Container], Awaitable[T]]) -> T:
    try:
        async with _database(settings) as container:
            return await work(container)
    except DomainError as exc:
        raise AdminError(exc.message) from None
    except AdminError:
        raise
    except Exception as exc:  # the database is down, unreachable or refuses us
        raise AdminError(
            f"cannot use the database at {masked_url(settings.database_url)} "
            f"({type(exc).__name__}: {_first_line(exc)}): is it running, and is "
            "CHAT_DATABASE_URL right?"
        ) from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no detail"


async def create_user(
    settings: Settings, username: str, password: str, display_name: str | None
) -> User:
    async def create(container: Container) -> User:
        return await container.register_user()(username, password, display_name)

    return await _with_database(settings, create)


async def deactivate_user(settings: Settings, username: str) -> User:
    async def deactivate(container: Container) -> User:
        return await container.deactivate_user()(username)

    return await _with_database(settings, deactivate)


async def reactivate_user(settings: Settings, username: str) -> User:
    async def reactivate(container: Container) -> User:
        return await container.reactivate_user()(username)

    return await _with_database(settings, reactivate)


async def reset_password(settings: Settings, username: str, password: str) -> User:
    async def reset(container: Container) -> User:
        return await container.reset_password()(username, password)

    return await _with_database(settings, reset)


async def list_rooms(settings: Settings, limit: int) -> list[RoomListing]:
    async def listing(container: Container) -> list[RoomListing]:
        return await container.list_all_rooms()(limit)

    return await _with_database(settings, listing)


async def prune_messages(settings: Settings, older_than_days: int) -> int:
    async def prune(container: Container) -> int:
        return await container.prune_messages()(older_than_days)

    return await _with_database(settings, prune)


async def create_api_key(settings: Settings, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    async def create(container: Container) -> tuple[ApiKey, str]:
        return await container.create_api_key()(name, scopes)

    return await _with_database(settings, create)


async def list_api_keys(settings: Settings) -> list[ApiKey]:
    async def listing(container: Container) -> list[ApiKey]:
        return await container.list_api_keys()()

    return await _with_database(settings, listing)


async def revoke_api_key(settings: Settings, key_id: str) -> ApiKey:
    async def revoke(container: Container) -> ApiKey:
        return await container.revoke_api_key()(key_id)

    return await _with_database(settings, revoke)


async def migrate_database(settings: Settings) -> None:
    """Bring the database to the latest schema: the database lifecycle, told to migrate."""

    async def nothing_more(container: Container) -> None:
        return None

    await _with_database(settings.model_copy(update={"auto_migrate": True}), nothing_more)


@asynccontextmanager
async def _broker(settings: Settings) -> AsyncIterator[Container]:
    """The container with only its broker open: no database, Redis or sockets to reach."""
    container = build_container(settings, role="admin")
    await _awaited(container.admin_broker.init())
    try:
        yield container
    finally:
        await _awaited(container.admin_broker.shutdown())


async def _with_broker(settings: Settings, work: Callable[[Container], Awaitable[T]]) -> T:
    try:
        async with _broker(settings) as container:
            return await work(container)
    except Unavailable:
        raise AdminError(
            f"cannot reach RabbitMQ at {masked_url(settings.rabbitmq_url)}: is it running, "
            "and are CHAT_RABBITMQ_URL, CHAT_RABBITMQ_PREFIX and CHAT_RABBITMQ_MAX_ATTEMPTS "
            "those of the workers?"
        ) from None
    except DomainError as exc:
        raise AdminError(exc.message) from None


async def list_dead_letters(settings: Settings, limit: int) -> list[DeadLetter]:
    async def listing(container: Container) -> list[DeadLetter]:
        return await container.list_dead_letters()(limit)

    return await _with_broker(settings, listing)


async def replay_dead_letters(settings: Settings, message_ids: Collection[str] | None) -> list[str]:
    async def replay(container: Container) -> list[str]:
        return await container.replay_dead_letters()(message_ids)

    return await _with_broker(settings, replay)
