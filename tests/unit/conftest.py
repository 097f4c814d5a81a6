"""Use cases on in-memory adapters: real storage, broker and notifier fakes with observable
state, a clock that stands still and sequential ids, so every test is fast and repeatable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from chat_adapters.memory.broker import InMemoryBroker
from chat_adapters.memory.notifier import RecordingNotifier
from chat_adapters.memory.storage import InMemoryUnitOfWorkFactory
from chat_adapters.memory.system import FixedClock, InsecureTestHasher, SequentialIds
from chat_adapters.security.tokens import JwtTokenService
from chat_domain.entities import Message, Room, User
from chat_domain.usecases.auth import RegisterUser
from chat_domain.usecases.messages import SendMessage, StoreMessages
from chat_domain.usecases.rooms import CreateGroupRoom

PASSWORD = "correct horse battery"


class RecordingBroker(InMemoryBroker):
    """The embedded broker, remembering what was published: the use case's observable side."""

    def __init__(self) -> None:
        super().__init__(partitions=1, max_attempts=1)
        self.published: list[Message] = []

    async def publish(self, message: Message) -> None:
        await super().publish(message)
        self.published.append(message)


@pytest.fixture
def storage(clock: FixedClock) -> InMemoryUnitOfWorkFactory:
    return InMemoryUnitOfWorkFactory(clock)


@pytest.fixture
def notifier() -> RecordingNotifier:
    return RecordingNotifier()


@pytest.fixture
async def broker() -> AsyncIterator[RecordingBroker]:
    broker = RecordingBroker()
    await broker.start()
    yield broker
    await broker.close()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def ids() -> SequentialIds:
    return SequentialIds()


@pytest.fixture
def hasher() -> InsecureTestHasher:
    return InsecureTestHasher()


@pytest.fixture
def tokens() -> JwtTokenService:
    # Issued at real "now": the tokens of other services in these tests use real time.
    return JwtTokenService("unit-test-signing-key-of-32-bytes!!", FixedClock(datetime.now(UTC)))


@dataclass
class World:
    """Shortcuts to the state a test starts from, built through the use cases themselves."""

    storage: InMemoryUnitOfWorkFactory
    notifier: RecordingNotifier
    broker: RecordingBroker
    clock: FixedClock
    ids: SequentialIds
    hasher: InsecureTestHasher

    async def user(self, username: str) -> User:
        register = RegisterUser(self.storage, self.hasher, self.clock, self.ids)
        return await register(username, PASSWORD, None)

    async def room(self, owner: User, *members: User, name: str = "room") -> Room:
        create = CreateGroupRoom(self.storage, self.notifier, self.clock, self.ids)
        details = await create(owner.id, name, [m.id for m in members])
        return details.room

    async def message(self, sender: User, room: Room, body: str = "hi") -> Message:
        """Send and store at once, as the embedded worker would; the clock ticks per message."""
        self.clock.advance(1)
        accepted = (
            await SendMessage(self.storage, self.broker, self.clock, self.ids)(
                sender.id, room.id, body
            )
        ).message
        return (await StoreMessages(self.storage, self.notifier)([accepted]))[0]

    def forget_events(self) -> None:
        self.notifier.sent.clear()


@pytest.fixture
def world(
    storage: InMemoryUnitOfWorkFactory,
    notifier: RecordingNotifier,
    broker: RecordingBroker,
    clock: FixedClock,
    ids: SequentialIds,
    hasher: InsecureTestHasher,
) -> World:
    return World(storage, notifier, broker, clock, ids, hasher)
