"""The composition root's wiring: settings pick adapters, resources open and close in order.

The container is built as the processes build it, with providers overridden by in-memory
fakes that record what was done to them; nothing here connects to a service.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from dependency_injector import providers
from sqlalchemy import event

from chat_adapters.memory.broker import InMemoryBroker
from chat_adapters.memory.presence import InMemoryPresenceTracker
from chat_adapters.memory.rate_limit import InMemoryRateLimiter
from chat_adapters.rabbitmq.broker import RabbitMQBroker
from chat_adapters.socketio.fan_out import InlineFanOutManager
from chat_adapters.socketio.redis_manager import SupervisedRedisManager
from chat_adapters.webhooks.memory import InMemoryWebhookOutbox
from chat_bootstrap.container import Container, build_container
from chat_bootstrap.runtime import running
from chat_bootstrap.settings import Settings
from chat_cli.admin import migrate_database
from chat_domain.usecases.consuming import MessageConsumer

Events = list[str]


def settings(tmp_path: Path, **fields: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=f"sqlite+aiosqlite:///{tmp_path}/chat.db", **fields
    )


def distributed(tmp_path: Path) -> Settings:
    return settings(tmp_path, broker="rabbitmq", socketio_manager="redis")


class RecordingBroker(InMemoryBroker):
    def __init__(self, events: Events, fail_start: bool = False) -> None:
        super().__init__(partitions=1)
        self.events, self.fail_start = events, fail_start

    async def start(self) -> None:
        if self.fail_start:
            raise ConnectionError("broker down")
        await super().start()
        self.events.append("broker started")

    async def close(self) -> None:
        await super().close()
        self.events.append("broker closed")


class RecordingManager(InlineFanOutManager):
    def __init__(self, events: Events) -> None:
        super().__init__()
        self.events = events

    async def close(self) -> None:
        self.events.append("fan-out closed")


class RecordingPresence(InMemoryPresenceTracker):
    def __init__(self, events: Events) -> None:
        super().__init__()
        self.events = events

    async def close(self) -> None:
        self.events.append("presence closed")


class RecordingLimiter(InMemoryRateLimiter):
    def __init__(self, events: Events) -> None:
        super().__init__()
        self.events = events

    async def close(self) -> None:
        self.events.append("limiter closed")


class RecordingOutbox(InMemoryWebhookOutbox):
    def __init__(self, events: Events) -> None:
        super().__init__()
        self.events = events

    async def start(self) -> None:
        self.events.append("webhook outbox started")

    async def close(self) -> None:
        await super().close()
        self.events.append("webhook outbox closed")


WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def closed_before(events: Events, first: str, *later: str) -> bool:
    return all(events.index(first) < events.index(other) for other in later)


@pytest.fixture
def events() -> Events:
    return []


@pytest.fixture
def fakes(events: Events) -> dict[str, Any]:
    return {
        "broker": RecordingBroker(events),
        "manager": RecordingManager(events),
        "presence": RecordingPresence(events),
        "limiter": RecordingLimiter(events),
        "outbox": RecordingOutbox(events),
    }


@contextmanager
def overridden(container: Container, fakes: dict[str, Any], events: Events) -> Iterator[None]:
    """The container with recording fakes for every client, and its database's closing seen."""

    def record_close(*_: Any) -> None:
        events.append("database closed")

    engine = container.engine()
    event.listen(engine.sync_engine, "close", record_close)
    with (
        container.broker_adapter.override(fakes["broker"]),
        container.socketio_manager.override(fakes["manager"]),
        container.write_only_manager.override(fakes["manager"]),
        container.presence.override(fakes["presence"]),
        container.rate_limiter.override(fakes["limiter"]),
        container.webhook_outbox_adapter.override(fakes["outbox"]),
    ):
        yield


@pytest.mark.parametrize(
    ("broker", "adapter"), [("memory", InMemoryBroker), ("rabbitmq", RabbitMQBroker)]
)
def test_the_broker_setting_picks_the_adapter(tmp_path: Path, broker: str, adapter: type) -> None:
    container = build_container(settings(tmp_path, broker=broker), role="server")

    assert type(container.broker_adapter()) is adapter
    assert container.broker().inner is container.broker_adapter()  # behind the metered wrapper
    assert container.consumer()._broker is container.broker()


@pytest.mark.parametrize(
    ("manager", "adapter"), [("local", InlineFanOutManager), ("redis", SupervisedRedisManager)]
)
def test_the_socketio_setting_picks_the_servers_manager(
    tmp_path: Path, manager: str, adapter: type
) -> None:
    container = build_container(settings(tmp_path, socketio_manager=manager), role="server")

    assert type(container.socketio_manager()) is adapter
    assert container.socketio_server().manager is container.socketio_manager()
    assert container.socketio_emitter() is container.socketio_server()


def test_a_worker_emits_through_a_write_only_redis_manager(tmp_path: Path) -> None:
    container = build_container(distributed(tmp_path), role="worker")

    emitter = container.socketio_emitter()
    assert isinstance(emitter, SupervisedRedisManager) and emitter.write_only
    assert container.fan_out_manager() is emitter
    assert isinstance(container.consumer(), MessageConsumer)


def test_only_a_worker_lingers_before_its_transactions(tmp_path: Path) -> None:
    tuned = settings(tmp_path, broker="rabbitmq", socketio_manager="redis")
    tuned.worker_linger_seconds = 0.05

    assert build_container(tuned, role="worker").consumer()._linger == 0.05
    # The embedded consumer stores its node's sends at once.
    assert build_container(tuned, role="server").consumer()._linger == 0.0


@pytest.mark.parametrize(
    ("fields", "refusal"),
    [
        ({"broker": "memory", "socketio_manager": "redis"}, "CHAT_BROKER=rabbitmq"),
        ({"broker": "rabbitmq", "socketio_manager": "local"}, "CHAT_SOCKETIO_MANAGER=redis"),
    ],
)
def test_a_worker_is_refused_with_in_process_adapters(
    tmp_path: Path, fields: dict[str, str], refusal: str
) -> None:
    with pytest.raises(ValueError, match=refusal):
        build_container(settings(tmp_path, **fields), role="worker")


def test_an_unknown_role_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown role"):
        build_container(settings(tmp_path), role="servr")


async def test_a_server_opens_its_clients_and_closes_them_broker_first(
    tmp_path: Path, events: Events, fakes: dict[str, Any]
) -> None:
    container = build_container(settings(tmp_path, auto_migrate=True), role="server")

    with overridden(container, fakes, events):
        async with running(container):
            assert events == ["broker started"]
            assert await container.list_rooms()("nobody") == []

    assert events[0] == "broker started"
    assert sorted(events[1:]) == [
        "broker closed",
        "database closed",
        "fan-out closed",
        "limiter closed",
        "presence closed",
    ]
    # The broker's message in hand was stored and fanned out before these closed.
    assert closed_before(events, "broker closed", "database closed", "fan-out closed")
    assert not any(r.initialized for r in container.traverse(types=[providers.Resource]))


async def test_a_worker_closes_its_emitter_and_opens_no_socket_services(
    tmp_path: Path, events: Events, fakes: dict[str, Any]
) -> None:
    container = build_container(distributed(tmp_path), role="worker")

    with overridden(container, fakes, events):
        async with running(container):
            pass

    assert events[0] == "broker started"
    assert sorted(events[1:]) == ["broker closed", "database closed", "fan-out closed"]
    assert closed_before(events, "broker closed", "database closed", "fan-out closed")


async def test_a_worker_with_webhook_subscribers_also_opens_presence_for_unread_events(
    tmp_path: Path, events: Events, fakes: dict[str, Any]
) -> None:
    configured = settings(
        tmp_path,
        broker="rabbitmq",
        socketio_manager="redis",
        webhook_urls=["http://127.0.0.1:9/hook"],
        webhook_secret=WEBHOOK_SECRET,
    )
    container = build_container(configured, role="worker")

    with overridden(container, fakes, events):
        async with running(container):
            pass

    # Presence tells the worker who is offline (message.unread); still no limiter.
    assert "presence closed" in events and "limiter closed" not in events
    assert closed_before(events, "broker closed", "webhook outbox closed")


async def test_with_webhook_subscribers_the_outbox_opens_first_and_closes_after_the_broker(
    tmp_path: Path, events: Events, fakes: dict[str, Any]
) -> None:
    configured = settings(
        tmp_path, webhook_urls=["http://127.0.0.1:9/hook"], webhook_secret=WEBHOOK_SECRET
    )
    container = build_container(configured, role="server")

    with overridden(container, fakes, events):
        async with running(container):
            assert events == ["webhook outbox started", "broker started"]

    # The batch in hand when the broker closes is still announced to the outbox.
    assert closed_before(events, "broker closed", "webhook outbox closed")


async def test_without_webhook_subscribers_the_outbox_is_never_opened(
    tmp_path: Path, events: Events, fakes: dict[str, Any]
) -> None:
    container = build_container(settings(tmp_path), role="server")

    with overridden(container, fakes, events):
        async with running(container):
            pass

    assert not any("webhook" in e for e in events)


async def test_a_failed_start_closes_what_had_opened(
    tmp_path: Path, events: Events, fakes: dict[str, Any]
) -> None:
    fakes["broker"] = RecordingBroker(events, fail_start=True)
    container = build_container(settings(tmp_path, auto_migrate=True), role="server")

    with overridden(container, fakes, events), pytest.raises(ConnectionError, match="down"):
        async with running(container):
            pytest.fail("started with its broker down")

    assert sorted(events) == [
        "database closed",
        "fan-out closed",
        "limiter closed",
        "presence closed",
    ]
    assert not any(r.initialized for r in container.traverse(types=[providers.Resource]))


async def test_migrate_migrates_through_the_containers_engine(tmp_path: Path) -> None:
    await migrate_database(settings(tmp_path))

    container = build_container(settings(tmp_path, auto_migrate=False), role="server")
    async with running(container):
        # Tables exist without the server migrating: `chat migrate` made them.
        assert await container.list_rooms()("nobody") == []


async def test_the_admin_role_opens_the_broker_alone_for_dead_letters(
    tmp_path: Path, events: Events, fakes: dict[str, Any]
) -> None:
    container = build_container(distributed(tmp_path), role="admin")

    with overridden(container, fakes, events):
        await container.admin_broker.init()
        assert events == ["broker started"]
        assert await container.list_dead_letters()(10) == []
        await container.admin_broker.shutdown()

    assert events == ["broker started", "broker closed"]  # no database, no fan-out
    assert not container.database.initialized
