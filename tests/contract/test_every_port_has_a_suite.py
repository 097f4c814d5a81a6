"""Every port has one contract suite here, and that suite runs every adapter of the port.

A new port without a suite, or a new adapter its port's suite does not run, fails this test:
a fake the unit tests trust would otherwise drift from production unseen.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import chat_adapters
import chat_domain.ports
from chat_domain.ports import (
    admission,
    broker,
    notifier,
    presence,
    rate_limit,
    security,
    storage,
    system,
    webhooks,
    worker_group,
)

HERE = Path(__file__).parent
# Each port (an ABC a use case is given) and its suite. The storage repositories and the
# unit of work are reached only through UnitOfWorkFactory, whose suite runs them all.
SUITES: dict[type, str] = {
    admission.Admission: "test_admission.py",
    broker.MessageBroker: "test_broker.py",
    notifier.RealtimeNotifier: "test_realtime_notifier.py",
    presence.PresenceTracker: "test_presence.py",
    rate_limit.RateLimiter: "test_rate_limit.py",
    security.AppTokenVerifier: "test_app_and_seed_tokens.py",
    security.PasswordHasher: "test_security.py",
    security.SeedTokenService: "test_app_and_seed_tokens.py",
    security.TokenService: "test_security.py",
    storage.UnitOfWorkFactory: "test_storage.py",
    system.Clock: "test_system.py",
    system.IdGenerator: "test_system.py",
    webhooks.PendingWebhookEvents: "test_pending_webhook_events.py",
    webhooks.WebhookOutbox: "test_webhook_outbox.py",
    webhooks.WebhookSender: "test_webhook_outbox.py",
    worker_group.WorkerGroup: "test_worker_group.py",
}
REACHED_THROUGH = {
    storage.ApiKeyRepository,
    storage.UserRepository,
    storage.RoomRepository,
    storage.BlockRepository,
    storage.MessageRepository,
    storage.UnitOfWork,
    # Written through the unit of work; read back through PendingWebhookEvents, whose
    # suite (test_pending_webhook_events.py) runs both on every storage.
    storage.WebhookEventRepository,
}
# Adapters a suite does not run, and why.
NOT_RUN = {
    # Times and counts, then delegates every call to the broker it wraps; the server's
    # metrics it feeds are checked end to end (tests/e2e/test_operations.py).
    "chat_adapters.metered.MeteredBroker",
    # The same for the webhook outbox and sender: their counters are read end to end
    # (tests/e2e/test_webhooks.py).
    "chat_adapters.webhooks.metered.MeteredWebhookOutbox",
    "chat_adapters.webhooks.metered.MeteredWebhookSender",
    # Sets a gauge from each count, delegates the rest (read end to end, test_webhooks.py).
    "chat_adapters.webhooks.metered.MeteredPendingWebhookEvents",
}
# Every module of chat_domain.ports, found rather than listed: a new one is checked too.
PORT_MODULES = [
    importlib.import_module(info.name)
    for info in pkgutil.iter_modules(chat_domain.ports.__path__, "chat_domain.ports.")
]


def _adapters() -> dict[type, list[type]]:
    found: dict[type, list[type]] = {port: [] for port in SUITES}
    for info in pkgutil.walk_packages(chat_adapters.__path__, "chat_adapters."):
        if ".migrations" in info.name:  # Alembic's scripts run only inside a migration
            continue
        module = importlib.import_module(info.name)
        for cls in vars(module).values():
            if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                continue
            for port in SUITES:
                if issubclass(cls, port) and not inspect.isabstract(cls):
                    found[port].append(cls)
    return found


def test_every_port_has_a_contract_suite() -> None:
    ports = {
        cls
        for module in PORT_MODULES
        for cls in vars(module).values()
        if inspect.isclass(cls) and inspect.isabstract(cls) and cls.__module__ == module.__name__
    }
    assert ports - REACHED_THROUGH == set(SUITES), "a port without a suite, or a suite gone"
    assert all((HERE / suite).exists() for suite in SUITES.values())


def test_every_adapter_is_run_by_its_ports_suite() -> None:
    missing = []
    for port, adapters in _adapters().items():
        assert adapters, f"no adapter of {port.__name__} found"
        suite = (HERE / SUITES[port]).read_text()
        for adapter in adapters:
            name = f"{adapter.__module__}.{adapter.__qualname__}"
            if adapter.__qualname__ not in suite and name not in NOT_RUN:
                missing.append(f"{name} ({port.__name__}) is not run by {SUITES[port]}")
    assert not missing, "\n".join(missing)
