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
