"""One delivery contract for every WebhookOutbox (in memory, RabbitMQ), end to end through
the dispatcher and the aiohttp sender to a receiver on loopback that verifies signatures
with the Standard Webhooks reference library.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage

from chat_adapters.webhooks.memory import InMemoryWebhookOutbox
from chat_adapters.webhooks.rabbitmq import RabbitMQWebhookOutbox
from chat_adapters.webhooks.sender import AiohttpWebhookSender
from chat_domain.errors import Unavailable
from chat_domain.ports.webhooks import WebhookEndpoint, WebhookEvent, WebhookOutbox
from chat_domain.usecases.webhooks import WebhookDispatcher
from tests.support.processes import free_port
from tests.support.services import RABBITMQ, require
from tests.support.webhook_receiver import Receiver

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
WAIT = 20.0


@dataclass
class Harness:
    outbox: WebhookOutbox
    # The dead letters as (event id, url), in the order they were set aside.
    dead_letters: Callable[[], list[tuple[str, str]]]
    dead_letter_arrived: asyncio.Event


@asynccontextmanager
async def memory_harness() -> AsyncIterator[Harness]:
    arrived = asyncio.Event()

    class Watched(InMemoryWebhookOutbox):
        async def set_aside(self, event: WebhookEvent, url: str, reason: str) -> None:
            await super().set_aside(event, url, reason)
            arrived.set()

    outbox = Watched()
    await outbox.start()
    try:
        yield Harness(outbox, lambda: [(e.id, url) for e, url, _ in outbox.dead_letters], arrived)
    finally:
        await outbox.close()


@asynccontextmanager
async def rabbitmq_harness() -> AsyncIterator[Harness]:
    url = require(RABBITMQ).url
    outbox = RabbitMQWebhookOutbox(url, prefix=f"test-{uuid4().hex[:8]}", publish_timeout=2.0)
    await outbox.start()
    await outbox.publish([])  # returns once connected and declared
    dead: list[tuple[str, str]] = []
    arrived = asyncio.Event()
    connection = await aio_pika.connect(url)

    async def on_dead(incoming: AbstractIncomingMessage) -> None:
        letter: Any = orjson.loads(incoming.body)
        if isinstance(letter, dict) and "event" in letter:
            dead.append((letter["event"]["id"], letter["url"]))
        else:  # a message that was never an event list: set aside as it came
            dead.append((incoming.body.decode(), ""))
        arrived.set()
        await incoming.ack()

    try:
        channel = await connection.channel()
        queue = await channel.get_queue(outbox.dead_letter_name)
        await queue.consume(on_dead)
        yield Harness(outbox, lambda: list(dead), arrived)
    finally:
        await outbox.close()
        await channel.queue_delete(outbox.queue_name)
        await channel.queue_delete(outbox.dead_letter_name)
        await connection.close()


HARNESSES = {"memory": memory_harness, "rabbitmq": rabbitmq_harness}


@pytest.fixture(params=sorted(HARNESSES))
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async with HARNESSES[request.param]() as made:
        yield made


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver(SECRET)
    yield receiver
    await receiver.stop()


@asynccontextmanager
async def dispatching(
    harness: Harness, receiver: Receiver, timeout: float = 5.0, **options: Any
) -> AsyncIterator[None]:
    sender = AiohttpWebhookSender(timeout=timeout)
    settings: dict[str, Any] = {"max_attempts": 100, "retry_base": 0.02, "retry_max": 0.2}
    dispatcher = WebhookDispatcher(
        harness.outbox, sender, [WebhookEndpoint(receiver.url, SECRET)], **(settings | options)
    )
    running = asyncio.create_task(dispatcher.run())
    try:
        yield
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await sender.close()


def events(rooms: list[str], per_room: int) -> list[WebhookEvent]:
    """``per_room`` events of each room, the rooms interleaved."""
    return [
        WebhookEvent(
            f"evt_{uuid4().hex}", "message.new", room, 1_700_000_000 + n, {"room_id": room, "n": n}
        )
        for n in range(per_room)
        for room in rooms
    ]


async def until(condition: Callable[[], bool], changed: asyncio.Event) -> None:
    async def loop() -> None:
        while not condition():
            changed.clear()
            await changed.wait()

    await asyncio.wait_for(loop(), WAIT)


async def test_events_arrive_signed_as_the_standard_webhooks_library_verifies(
    harness: Harness, receiver: Receiver
) -> None:
    await receiver.start()
    published = events(["room-a"], 3)
    await harness.outbox.publish(published)

    async with dispatching(harness, receiver):
        await receiver.until(lambda: len(receiver.received) >= 3)

    assert receiver.unverified == 0
    assert [(r.id, r.type, r.data) for r in receiver.received] == [
        (e.id, e.type, dict(e.data)) for e in published
    ]


async def test_a_receiver_signing_with_another_secret_refuses_every_request(
    harness: Harness, receiver: Receiver
) -> None:
    # The oracle's side: our signature is checked, not waved through.
    receiver.secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    await receiver.start()
    await harness.outbox.publish(events(["room-a"], 1))

    async with dispatching(harness, receiver):
        await receiver.until(lambda: receiver.unverified >= 2)

    assert receiver.received == []


async def test_a_receiver_down_then_refusing_then_up_gets_every_event_in_room_order(
    harness: Harness, receiver: Receiver
) -> None:
    published = events(["room-a", "room-b", "room-c"], 10)
    await harness.outbox.publish(published[:15])

    async with dispatching(harness, receiver):
        # Down: nothing listens (connection refused) while the first events are tried.
        await harness.outbox.publish(published[15:])
        # Then up but failing (503) for a while, then well.
        receiver.mode = "refuse"
        await receiver.start()
        await receiver.until(lambda: receiver.refused >= 10)
        receiver.mode = "accept"
        await receiver.until(lambda: set(receiver.unique_ids()) >= {e.id for e in published})

    # At least once: after the receiver's dedupe by id, each event exactly once...
    assert sorted(receiver.unique_ids()) == sorted(e.id for e in published)
    # ...and each room's in the order they were published.
    for room in ("room-a", "room-b", "room-c"):
        of_room = [e.id for e in published if e.room_id == room]
        assert [i for i in receiver.unique_ids() if i in of_room] == of_room
    assert harness.dead_letters() == []


async def test_a_receiver_that_never_answers_ends_in_the_dead_letters_and_the_room_moves_on(
    harness: Harness, receiver: Receiver
) -> None:
    receiver.mode = "hang"
    await receiver.start()
    published = events(["room-a"], 2)
    await harness.outbox.publish(published)

    async with dispatching(harness, receiver, timeout=0.2, max_attempts=2):
        await until(lambda: len(harness.dead_letters()) >= 2, harness.dead_letter_arrived)

    assert harness.dead_letters() == [(e.id, receiver.url) for e in published]
    assert receiver.received == []


async def test_a_room_refused_by_its_receiver_does_not_hold_another_rooms_events(
    harness: Harness, receiver: Receiver
) -> None:
    receiver.refused_rooms.add("room-stuck")
    await receiver.start()
    stuck = WebhookEvent("evt_stuck", "message.new", "room-stuck", 0, {"room_id": "room-stuck"})
    published = events(["room-free"], 3)
    await harness.outbox.publish([stuck, *published])

    async with dispatching(harness, receiver):
        await receiver.until(lambda: len(receiver.received) >= 3)
        assert [r.id for r in receiver.received] == [e.id for e in published]
        assert receiver.refused >= 1  # room-stuck was tried, and keeps being retried
        receiver.refused_rooms.clear()
        await receiver.until(lambda: "evt_stuck" in receiver.unique_ids())


async def test_a_dispatcher_stopped_mid_delivery_leaves_its_events_to_the_next(
    harness: Harness, receiver: Receiver
) -> None:
    receiver.mode = "refuse"
    await receiver.start()
    published = events(["room-a", "room-b"], 4)
    await harness.outbox.publish(published)
    async with dispatching(harness, receiver):
        await receiver.until(lambda: receiver.refused >= 4)
    # Stopped with every event in hand unacknowledged: the next dispatcher gets them.
    receiver.mode = "accept"
    async with dispatching(harness, receiver):
        await receiver.until(lambda: set(receiver.unique_ids()) >= {e.id for e in published})

    for room in ("room-a", "room-b"):
        of_room = [e.id for e in published if e.room_id == room]
        assert [i for i in receiver.unique_ids() if i in of_room] == of_room


async def test_a_rabbitmq_outbox_started_while_the_broker_is_down_refuses_publishes() -> None:
    # A process starts and serves while RabbitMQ is down; only announcing fails (Unavailable).
    outbox = RabbitMQWebhookOutbox(
        f"amqp://guest:guest@127.0.0.1:{free_port()}/", prefix="unreachable", publish_timeout=0.3
    )
    await outbox.start()
    try:
        with pytest.raises(Unavailable):
            await outbox.publish(events(["room-a"], 1))
        with pytest.raises(Unavailable):
            await outbox.check()
    finally:
        await outbox.close()


async def test_a_rabbitmq_message_that_is_no_event_is_set_aside_and_the_rest_delivered(
    receiver: Receiver,
) -> None:
    async with rabbitmq_harness() as harness:
        assert isinstance(harness.outbox, RabbitMQWebhookOutbox)
        connection = await aio_pika.connect(require(RABBITMQ).url)
        async with connection:
            channel = await connection.channel()
            await channel.default_exchange.publish(
                aio_pika.Message(b'{"not": "a list"}'), routing_key=harness.outbox.queue_name
            )
        published = events(["room-a"], 2)
        await harness.outbox.publish(published)
        await receiver.start()

        async with dispatching(harness, receiver):
            await receiver.until(lambda: len(receiver.received) >= 2)
            await until(lambda: len(harness.dead_letters()) >= 1, harness.dead_letter_arrived)

        assert [r.id for r in receiver.received] == [e.id for e in published]
        assert harness.dead_letters() == [('{"not": "a list"}', "")]
