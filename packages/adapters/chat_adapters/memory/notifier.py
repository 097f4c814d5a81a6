"""An in-memory notifier that records what would be pushed: the fake for use-case tests."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from chat_domain.ports.notifier import Payload, RealtimeNotifier


@dataclass(frozen=True, slots=True)
class Notification:
    user_ids: tuple[str, ...]
    event: str
    payload: dict[str, Any]


@dataclass
class RecordingNotifier(RealtimeNotifier):
    sent: list[Notification] = field(default_factory=list)

    async def emit_to_users(self, user_ids: Iterable[str], event: str, payload: Payload) -> None:
        self.sent.append(Notification(tuple(dict.fromkeys(user_ids)), event, dict(payload)))

    def events_for(self, user_id: str, event: str) -> list[dict[str, Any]]:
        return [n.payload for n in self.sent if n.event == event and user_id in n.user_ids]
