"""The operator's view of dead letters: messages the broker set aside after they kept
failing, listed to see what went wrong and replayed once the cause is fixed."""

from __future__ import annotations

from collections.abc import Collection

from chat_domain.errors import InvalidInput
from chat_domain.ports.broker import DeadLetter, MessageBroker

DEAD_LETTER_LISTING_MAX = 10_000


class ListDeadLetters:
    """Up to ``limit`` dead letters, oldest first; listing takes none of them away."""

    def __init__(self, broker: MessageBroker) -> None:
        self._broker = broker

    async def __call__(self, limit: int) -> list[DeadLetter]:
        if not 1 <= limit <= DEAD_LETTER_LISTING_MAX:
            raise InvalidInput(f"limit: must be 1..{DEAD_LETTER_LISTING_MAX}")
        return await self._broker.dead_letters(limit)


class ReplayDeadLetters:
    """Send dead letters back through the normal path: published again to their room's
    partition, stored by a worker like any accepted message. Storage is idempotent by
    message id, so one that was stored after all (or is replayed twice) is stored once.

    ``message_ids`` None replays every dead letter; returns the ids replayed.
    """

    def __init__(self, broker: MessageBroker) -> None:
        self._broker = broker

    async def __call__(self, message_ids: Collection[str] | None) -> list[str]:
        if message_ids is not None and not message_ids:
            raise InvalidInput("message ids: name at least one, or replay them all")
        return await self._broker.replay_dead_letters(message_ids)
