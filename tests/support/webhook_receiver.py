"""A webhook receiver on loopback (aiohttp), as a subscriber's app would run it.

It verifies every request with the Standard Webhooks reference library, records what it
took, and can be told to refuse (503), to hang (never answer) or to be down (no listener).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from tests.support.processes import free_port

Mode = Literal["accept", "refuse", "hang"]


@dataclass
class Received:
    id: str
    type: str
    room_id: str
    data: dict[str, Any]


@dataclass
class Receiver:
    secret: str
    mode: Mode = "accept"
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    refused: int = 0
    # Verified requests per event id, answered or not.
    attempts: Counter[str] = field(default_factory=Counter)
    # Rooms whose events are refused (503) whatever the mode.
    refused_rooms: set[str] = field(default_factory=set)
    unverified: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self._take)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        self._released.set()  # a hanging request ends (its sender has long timed out)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _take(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError:
            self.unverified += 1
            self._changed.set()
            return web.Response(status=400)
        payload = json.loads(body)
        data = payload["data"]
        self.attempts[payload["id"]] += 1
        self._changed.set()
        if self.mode == "hang":
            await self._released.wait()
        if self.mode != "accept" or data["room_id"] in self.refused_rooms:
            self.refused += 1
            self._changed.set()
            return web.Response(status=503)
        self.received.append(Received(payload["id"], payload["type"], data["room_id"], data))
        assert request.headers["webhook-id"] == payload["id"]
        self._changed.set()
        return web.Response(status=204)

    def unique_ids(self) -> list[str]:
        """Ids in order of first arrival: the receiver's dedupe."""
        return list(dict.fromkeys(r.id for r in self.received))

    async def until(self, condition: Any, timeout: float = 20.0) -> None:
        """Wait until ``condition()`` holds, re-checking on every request."""

        async def loop() -> None:
            while not condition():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)
