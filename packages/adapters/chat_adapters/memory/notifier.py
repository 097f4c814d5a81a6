"""An in-memory notifier that records what would be pushed: the fake for use-case tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from chat_domain.ports.notifier import Notification, Payload, RealtimeNotifier


@dataclass
class RecordingNotifier(RealtimeNotifier):
    sent: list[Notification] = field(default_factory=list)
    # Set at each emit: lets a test wait for an event a background task will emit.
    _emitted: asyncio.Event = field(default_factory=asyncio.Event)

    async def emit_to_users(self, user_ids: Iterable[str], event: str, payload: Payload) -> None:
        self.sent.append(Notification(tuple(dict.fromkeys(user_ids)), event, dict(payload)))
        self._emitted.set()

    async def wait_for(
        self, user_id: str, event: str, count: int, timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        """The first ``count`` ``event``s for ``user_id``, once that many were emitted."""
        async with asyncio.timeout(timeout):
            while len(found := self.events_for(user_id, event)) < count:
                self._emitted.clear()
                await self._emitted.wait()
        return found[:count]

    def events_for(self, user_id: str, event: str) -> list[dict[str, Any]]:
        return [dict(n.payload) for n in self.sent if n.event == event and user_id in n.user_ids]
