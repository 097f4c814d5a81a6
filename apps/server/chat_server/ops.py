"""Operations endpoints: liveness, readiness, metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Blueprint, Response

from chat_domain.errors import DomainError
from chat_server.http import services

blueprint = Blueprint("ops", __name__)
READINESS_TIMEOUT = 3.0


@blueprint.get("/healthz")
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@blueprint.get("/readyz")
async def readyz() -> tuple[dict[str, Any], int]:
    container = services()
    probes = {
        "database": container.uow().check,
        "broker": container.broker().check,
        "socketio": container.notifier().check,
    }
    results = await asyncio.gather(
        *(asyncio.wait_for(probe(), READINESS_TIMEOUT) for probe in probes.values()),
        return_exceptions=True,
    )
    checks: dict[str, str] = {}
    for name, result in zip(probes, results, strict=True):
        if isinstance(result, DomainError):
            checks[name] = result.message
        elif isinstance(result, BaseException):
            checks[name] = f"{type(result).__name__}: no answer"
        else:
            checks[name] = "ok"
    failing = [name for name, state in checks.items() if state != "ok"]
    if failing:
        return {
            "status": "unavailable",
            "failing": failing,
            "checks": checks,
            "error": {"code": "unavailable", "message": f"not ready: {', '.join(failing)}"},
        }, 503
    return {"status": "ok", "checks": checks}, 200


@blueprint.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(), content_type=CONTENT_TYPE_LATEST)
