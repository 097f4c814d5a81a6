"""docker-compose.yml cannot run here (no Docker engine), so keep it honest another way:
every service of our image runs a command the CLI really has, with settings the code
really reads, and values the settings accept."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from chat_bootstrap.settings import Settings
from chat_cli.main import build_parser
from chat_server.serving import DRAIN_BUDGET_S

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
OUR_SERVICES = {
    name: service
    for name, service in COMPOSE["services"].items()
    if service.get("image") == "chat-backend" or "build" in service
}


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    resolved = {}
    for key, value in env.items():
        value = str(value)
        if value.startswith("${CHAT_SECRET_KEY"):
            value = "x" * 48  # what a user provides
        resolved[key] = value
    return resolved


def test_the_stack_has_what_the_scale_out_needs() -> None:
    services = COMPOSE["services"]
    assert {"postgres", "redis", "rabbitmq", "migrate", "server", "worker", "lb"} <= set(services)
    assert services["server"]["deploy"]["replicas"] >= 2
    assert services["worker"]["deploy"]["replicas"] >= 2
    for name in ("postgres", "redis", "rabbitmq", "server"):
        assert "healthcheck" in services[name], f"{name} has no health check"
    assert (ROOT / "Dockerfile").exists()
    nginx = (ROOT / "deploy/nginx.conf").read_text()
    assert "Upgrade $http_upgrade" in nginx and "ip_hash" in nginx


@pytest.mark.parametrize("name", sorted(OUR_SERVICES))
def test_each_service_runs_a_real_command_with_real_settings(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = OUR_SERVICES[name]
    command = service["command"]
    assert command[0] == "chat"
    build_parser().parse_args(command[1:])  # SystemExit on an unknown command or flag

    env = _env(service)
    known = {f"CHAT_{field.upper()}" for field in Settings.model_fields}
    unknown = sorted(set(env) - known)
    assert not unknown, f"{name} sets variables the code does not read: {unknown}"
    for key in [k for k in os.environ if k.startswith("CHAT_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    if command[1] in {"serve", "worker"}:
        assert settings.broker == "rabbitmq" and settings.socketio_manager == "redis"
        assert settings.database_url.startswith("postgresql+asyncpg://")
        assert settings.embedded_worker is False


LONG_RUNNING = {
    name: service
    for name, service in COMPOSE["services"].items()
    if service.get("restart") != "no"  # the one-shot migrate job
}


def _seconds(duration: str) -> float:
    units = {"s": 1, "m": 60}
    return float(duration[:-1]) * units[duration[-1]]


@pytest.mark.parametrize("name", sorted(LONG_RUNNING))
def test_every_long_running_service_restarts_and_is_health_checked(name: str) -> None:
    service = LONG_RUNNING[name]
    assert service.get("restart") == "unless-stopped", f"{name} does not restart by itself"
    assert "healthcheck" in service, f"{name} has no health check"


def test_recreating_rabbitmq_keeps_its_queues() -> None:
    # RabbitMQ names its data directory after the node, rabbit@<hostname>.
    rabbitmq = COMPOSE["services"]["rabbitmq"]
    assert rabbitmq.get("hostname"), "rabbitmq needs a fixed hostname to find its data again"
    assert any(v.endswith(":/var/lib/rabbitmq") for v in rabbitmq["volumes"])


def test_servers_stop_within_their_grace_period_and_see_client_addresses() -> None:
    server = COMPOSE["services"]["server"]
    assert _seconds(server["stop_grace_period"]) > DRAIN_BUDGET_S
    worker = COMPOSE["services"]["worker"]
    assert _seconds(worker["stop_grace_period"]) > 10
    # One proxy (nginx) in front: without this every client shares nginx's address.
    assert _env(server)["CHAT_TRUSTED_PROXY_HOPS"] == "1"


def test_operations_endpoints_stay_off_the_public_listener() -> None:
    nginx = (ROOT / "deploy/nginx.conf").read_text()
    for path in ("/metrics", "/readyz"):
        assert f"location = {path} {{ return 404; }}" in nginx, f"nginx serves {path}"
    # Replicas are looked up again as they come and go, not once at start.
    assert "resolver " in nginx and " resolve;" in nginx
    assert "ports" not in COMPOSE["services"]["worker"]
    assert "ports" not in COMPOSE["services"]["server"]


def test_the_worker_health_check_asks_its_own_operations_port() -> None:
    worker = COMPOSE["services"]["worker"]
    port = _env(worker)["CHAT_WORKER_OPS_PORT"]
    assert f"127.0.0.1:{port}/readyz" in " ".join(worker["healthcheck"]["test"])
    assert _env(worker)["CHAT_WORKER_OPS_HOST"] == "0.0.0.0"


def test_the_image_runs_a_python_that_ci_tests() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
