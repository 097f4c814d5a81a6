"""The message broker port: where an accepted message waits until a worker stores it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

from chat_domain.entities import Message

MessageHandler = Callable[[Message], Awaitable[None]]


class MessageBroker(ABC):
    """Durable, at-least-once hand-off of accepted messages from servers to workers.

    Semantics every adapter must have (the broker contract tests check them):

    * ``publish`` returns only once the broker has the message durably (publisher
      confirm); if it cannot, it raises ``Unavailable`` and nothing was accepted.
    * ``consume`` calls the handler for each message and acknowledges it only after
      the handler returned; a handler that raises gets the message again later.
    * Messages of one room reach the handler in the order they were published.
    * A message that keeps failing is set aside (dead-lettered) after a bounded
      number of attempts, and logged, never silently dropped.
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
    async def consume(self, handler: MessageHandler) -> None:
        """Deliver messages to ``handler`` until ``close`` is called."""

    @abstractmethod
    async def check(self) -> None:
        """Raise ``Unavailable`` if the broker does not answer (readiness probe)."""
