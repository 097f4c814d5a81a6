"""Clock and id generator for production: UTC wall time and UUIDs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from chat_domain.ports.system import Clock, IdGenerator

# A fixed namespace so that stable ids agree across processes and releases.
_STABLE_NAMESPACE = uuid.UUID("6f1c8a4e-2a7b-4f4e-9a52-3c1d5e0b9a11")


class SystemClock(Clock):
    def now(self) -> datetime:
        return datetime.now(UTC)


class UuidGenerator(IdGenerator):
    def new_id(self) -> str:
        return str(uuid.uuid4())

    def stable_id(self, *parts: str) -> str:
        # The unit separator cannot occur in our ids, so ("a", "bc") != ("ab", "c").
        return str(uuid.uuid5(_STABLE_NAMESPACE, "\x1f".join(parts)))
