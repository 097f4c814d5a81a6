"""A worker's own operations endpoints: /healthz, /readyz and /metrics on a port of its own.

A worker has no HTTP server for clients, so without this it could only be watched through
its logs. The app is plain ASGI (three GET routes need no framework) served by hypercorn
on ``CHAT_WORKER_OPS_HOST:CHAT_WORKER_OPS_PORT``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chat_domain.errors import DomainError

log = logging.getLogger("chat.worker.ops")
READINESS_TIMEOUT = 3.0

Probe = Callable[[], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class WorkerOpsApp:
    """ASGI: liveness (the process answers), readiness (every backing service answers)
    and the Prometheus registry of this process."""

    def __init__(self, probes: Mapping[str, Probe]) -> None:
        self._probes = dict(probes)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method not in ("GET", "HEAD"):
            await _answer(send, 405, _error("method_not_allowed", "only GET is served here"))
        elif path == "/healthz":
            await _answer(send, 200, {"status": "ok"})
        elif path == "/readyz":
            status, body = await self.readiness()
            await _answer(send, status, body)
        elif path == "/metrics":
            await _send(send, 200, generate_latest(), CONTENT_TYPE_LATEST)
        else:
            await _answer(send, 404, _error("not_found", "not found"))

    async def readiness(self) -> tuple[int, dict[str, Any]]:
        results = await asyncio.gather(
            *(asyncio.wait_for(probe(), READINESS_TIMEOUT) for probe in self._probes.values()),
            return_exceptions=True,
        )
        checks: dict[str, str] = {}
        for name, result in zip(self._probes, results, strict=True):
            if isinstance(result, DomainError):
                checks[name] = result.message
            elif isinstance(result, BaseException):
                checks[name] = f"{type(result).__name__}: no answer"
            else:
                checks[name] = "ok"
        failing = [name for name, state in checks.items() if state != "ok"]
        if failing:
            return 503, {
                "status": "unavailable",
                "failing": failing,
                "checks": checks,
                **_error("unavailable", f"not ready: {', '.join(failing)}"),
            }
        return 200, {"status": "ok", "checks": checks}


async def serve_worker_ops(app: WorkerOpsApp, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve ``app`` until ``stop`` is set."""
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 1
    log.info("worker operations endpoints on http://%s:%d", host, port)
    await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


async def _answer(send: Send, status: int, body: dict[str, Any]) -> None:
    await _send(send, status, json.dumps(body).encode(), "application/json")


async def _send(send: Send, status: int, body: bytes, content_type: str) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
