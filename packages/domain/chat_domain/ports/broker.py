"""The message broker port: where an accepted message waits until a worker stores it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from chat_domain.entities import Message

# Takes a batch: messages of one partition, in publish order; succeeds or fails as a whole.
MessageBatchHandler = Callable[[Sequence[Message]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message the broker set aside after it kept failing, as an operator sees it."""

    message_id: str
    # None if its body cannot be read (it can only be looked at by hand, never replayed).
    message: Message | None
    reason: str  # why it was set aside, in a few words
    dead_lettered_at: datetime | None  # when, if the broker records it
    attempts: int | None  # deliveries that failed before, if the broker knows them


class MessageBroker(ABC):
    """Durable, at-least-once hand-off of accepted messages from servers to workers.

    Semantics every adapter must have (the broker contract tests check them):

    * ``publish`` returns only once the broker has the message durably (publisher
      confirm); if it cannot, it raises ``Unavailable`` and nothing was accepted.
    * ``consume`` hands the handler batches: the messages of one partition (a fixed
      set of rooms) that are waiting, in publish order, at most ``batch_size``. It
      acknowledges them only after the handler returned; a handler that raises gets
      the messages again, one at a time and in order, so that one bad message fails
      alone. One batch per partition is in hand at a time.
    * Messages of one room reach the handler in the order they were published, and a
      failing message holds its room until it is handled or set aside.
    * A message that keeps failing on its own is set aside (dead-lettered) after a
      bounded number of attempts, and logged, never silently dropped.
    * Dead letters stay until an operator replays them: ``dead_letters`` lists them
      without taking them away, ``replay_dead_letters`` publishes them again (the normal,
      confirmed ``publish``, so each goes back to its room's partition) and only then
      removes them. A crash in between leaves a copy in the dead letters; replaying it
      again is harmless, because storage is idempotent by message id.
    """

    @abstractmethod
    async def start(self) -> None:
        """Connect and declare what the broker needs."""

    @abstractmethod
    async def close(self) -> None:
        """Stop consuming, let the message in hand finish, and disconnect."""

    @abstractmethod
    async def publish(self, message: Message) -> None:
        """Hand ``message`` over durably; raise ``Unavailable`` if that is not confirmed."""

    @abstractmethod
    async def consume(self, handler: MessageBatchHandler) -> None:
        """Deliver batches of messages to ``handler`` until ``close`` is called."""

    @abstractmethod
    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        """The ``limit`` dead letters set aside first, in that order (then by acceptance),
        left in place.

        Raise ``Unavailable`` if the broker cannot be read."""

    @abstractmethod
    async def replay_dead_letters(self, message_ids: Collection[str] | None) -> list[str]:
        """Publish the dead letters with these ids (every one if None) again, in the order
        they were accepted (so a room's keep their order), removing each once its publish
        is confirmed; return the ids replayed. Unknown ids and unreadable dead letters are left
        out. Raise ``Unavailable`` if the broker cannot be reached; what was replayed
        before that stays replayed."""

    @abstractmethod
    async def check(self) -> None:
        """Raise ``Unavailable`` if the broker does not answer (readiness probe)."""
