"""Backing services for contract and end-to-end tests.

On a developer's laptop without PostgreSQL, Redis or RabbitMQ, the tests that need
one skip with a message that says how to start it. In CI (``CI=true``) they never
skip: a missing service fails the run, because `.ci/run` is supposed to start it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Service:
    name: str
    host: str
    port: int
    url: str
    how_to_start: str


POSTGRES = Service(
    "PostgreSQL",
    "127.0.0.1",
    5432,
    os.environ.get("CHAT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"),
    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
)
REDIS = Service(
    "Redis",
    "127.0.0.1",
    6379,
    os.environ.get("CHAT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
)
RABBITMQ = Service(
    "RabbitMQ",
    "127.0.0.1",
    5672,
    os.environ.get("CHAT_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    "rabbitmq-server -detached",
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def is_up(service: Service, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((service.host, service.port), timeout=timeout):
            return True
    except OSError:
        return False


def require(service: Service) -> Service:
    """Skip (or, in CI, fail) the calling test when ``service`` does not answer."""
    if is_up(service):
        return service
    message = (
        f"{service.name} is not running on {service.host}:{service.port}; "
        f"start it with: {service.how_to_start}"
    )
    if in_ci():
        pytest.fail(message + " (CI never skips these tests)")
    pytest.skip(message)
