"""The message broker port: where an accepted message waits until a worker stores it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence

from chat_domain.entities import Message

# Takes a batch: messages of one partition, in publish order; succeeds or fails as a whole.
MessageBatchHandler = Callable[[Sequence[Message]], Awaitable[None]]


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
    async def check(self) -> None:
        """Raise ``Unavailable`` if the broker does not answer (readiness probe)."""
