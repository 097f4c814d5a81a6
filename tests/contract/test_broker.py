"""One contract for every MessageBroker: the in-memory default and RabbitMQ.

Each RabbitMQ test declares its own queues under a random prefix and deletes them
afterwards, so runs (and other engineers' tests on the same server) never meet.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import uuid4

import aio_pika
import pytest
from prometheus_client import REGISTRY

from chat_adapters.memory.broker import InMemoryBroker
from chat_adapters.memory.worker_group import InMemoryWorkerGroup
from chat_adapters.rabbitmq.broker import RabbitMQBroker
from chat_adapters.rabbitmq.codec import partition_of
from chat_adapters.redis.worker_group import RedisWorkerGroup
from chat_domain.entities import Message
from chat_domain.errors import Unavailable
from chat_domain.ports.broker import DeadLetter, MessageBatchHandler, MessageBroker
from tests.support.processes import free_port
from tests.support.services import RABBITMQ, in_ci, require

WAIT = 20.0  # upper bound for anything we wait for; a pass takes far less
PUBLISH_TIMEOUT = 2.0
MAX_ATTEMPTS = 3
PARTITIONS = 4


def message(room_id: str = "room-1", n: int = 0) -> Message:
    return Message(
        id=f"{room_id}-{n}-{uuid4().hex[:6]}",
        room_id=room_id,
        sender_id="user-1",
        body=f"message {n}",
        created_at=datetime.now(UTC),
    )


@dataclass
class Worker:
    """A consume() call running as a task, as a worker process would run it."""

    broker: MessageBroker
    task: asyncio.Task[None]

    async def kill(self) -> None:
        """Hard stop: the consume call is cancelled mid-work, as if the process died."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@dataclass
class Harness:
    """What a test needs from one adapter, whichever it is."""

    kind: str
    make: Callable[..., Awaitable[MessageBroker]]  # a started broker on the same queues

    wait_consumers: Callable[[int], Awaitable[None]]  # until every queue has that many
    wait_delivered: Callable[[], Awaitable[None]]  # until no message waits in a queue
    publisher: MessageBroker = field(init=False)
    prefix: str = ""
    workers: list[Worker] = field(default_factory=list)

    async def dead_letter(self) -> Message:
        """The first dead letter, once there is one (it stays a dead letter)."""

        async def listed() -> Message:
            while not (dead := await self.publisher.dead_letters(1)):  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # no event tells a dead letter has arrived: poll
            assert dead[0].message is not None
            return dead[0].message

        return await asyncio.wait_for(listed(), WAIT)

    async def worker(
        self, handler: MessageBatchHandler, broker: MessageBroker | None = None
    ) -> Worker:
        broker = broker or self.publisher
        worker = Worker(broker, asyncio.create_task(broker.consume(handler)))
        self.workers.append(worker)
        return worker


async def until_ready(broker: MessageBroker) -> None:
    while True:
        try:
            return await broker.check()
        except Unavailable:
            await asyncio.sleep(0.05)


@asynccontextmanager
async def memory_harness() -> AsyncIterator[Harness]:
    broker = InMemoryBroker(partitions=PARTITIONS, max_attempts=MAX_ATTEMPTS, retry_backoff=0.01)
    await broker.start()

    async def same(**_: object) -> MessageBroker:
        # One process: a second "worker" is a second consume() on the same broker.
        return broker

    async def no_wait(_: int) -> None:
        return None

    async def delivered() -> None:
        return None  # one process: a published message is in the consumer's reach at once

    harness = Harness("memory", same, no_wait, delivered)
    harness.publisher = broker
    try:
        yield harness
    finally:
        for worker in harness.workers:
            await worker.kill()
        await broker.close()


@asynccontextmanager
async def rabbitmq_harness() -> AsyncIterator[Harness]:
    url = require(RABBITMQ).url
    prefix = f"test-{uuid4().hex[:8]}"
    brokers: list[RabbitMQBroker] = []

    async def make(**overrides: Any) -> MessageBroker:
        settings: dict[str, Any] = {
            "prefix": prefix,
            "partitions": PARTITIONS,
            "max_attempts": MAX_ATTEMPTS,
            "publish_timeout": PUBLISH_TIMEOUT,
            "retry_backoff": 0.01,
            "reconnect_interval": 0.5,
        }
        broker = RabbitMQBroker(url, **(settings | overrides))
        brokers.append(broker)
        await broker.start()
        return broker

    async def wait_consumers(count: int) -> None:
        # declare-ok counts only the active consumer of a single-active-consumer queue:
        # rabbitmqctl also lists the waiting ones. AMQP has no event for this: poll.
        names = publisher.queue_names()
        while True:
            if shutil.which("rabbitmqctl"):
                counts = Counter(
                    line.split("\t")[0]
                    for line in await rabbitmqctl(
                        "list_consumers", "-q", "--no-table-headers", "queue_name"
                    )
                )
            else:
                counts = Counter()
                for name in names:
                    queue = await admin_channel.get_queue(name)
                    counts[name] = queue.declaration_result.consumer_count or 0
                count = min(count, 1)
            if all(counts[name] >= count for name in names):
                return
            await asyncio.sleep(0.05)

    async def wait_delivered() -> None:
        # A passive declare counts the ready messages only, not those delivered unacked.
        while True:
            ready = 0
            for name in publisher.queue_names():
                queue = await admin_channel.get_queue(name)
                ready += queue.declaration_result.message_count or 0
            if ready == 0:
                return
            await asyncio.sleep(0.05)

    admin = await aio_pika.connect(url)
    harness = Harness("rabbitmq", make, wait_consumers, wait_delivered, prefix=prefix)
    try:
        admin_channel = await admin.channel()
        publisher = cast(RabbitMQBroker, await make())
        harness.publisher = publisher
        await asyncio.wait_for(until_ready(publisher), WAIT)
        yield harness
    finally:
        for worker in harness.workers:
            await worker.kill()
        for broker in brokers:
            await broker.close()
        channel = await admin.channel()
        if brokers:
            for name in [*brokers[0].queue_names(), brokers[0].dead_letter_name]:
                await channel.queue_delete(name)
            for name in (brokers[0].exchange_name, brokers[0].dead_letter_name):
                await channel.exchange_delete(name)
        await admin.close()


@pytest.fixture(params=["memory", "rabbitmq"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    build = memory_harness if request.param == "memory" else rabbitmq_harness
    async with build() as h:
        yield h


Work = Callable[[Message], Awaitable[None]]


class Recorder:
    """A batch handler that records what it stored, per room, and lets a test wait for it.

    Like the real consumer, a batch is stored whole or not at all: one message that
    raises fails its whole batch. ``alone`` counts the attempts at a message on its own.
    """

    def __init__(self) -> None:
        self.stored: dict[str, list[str]] = defaultdict(list)
        self.attempts: dict[str, int] = defaultdict(int)
        self.alone: dict[str, int] = defaultdict(int)
        self.batches: list[int] = []
        self.count = 0
        self._changed = asyncio.Condition()

    async def __call__(self, batch: Sequence[Message]) -> None:
        await self.run(batch, self.handle)

    async def run(self, batch: Sequence[Message], work: Work) -> None:
        for msg in batch:
            self.attempts[msg.id] += 1
            if len(batch) == 1:
                self.alone[msg.id] += 1
        for msg in batch:
            await work(msg)
        self.batches.append(len(batch))
        for msg in batch:
            self.stored[msg.room_id].append(msg.id)
        async with self._changed:
            self.count += len(batch)
            self._changed.notify_all()

    async def handle(self, msg: Message) -> None:
        await asyncio.sleep(0)  # let other partitions interleave

    async def wait_for(self, count: int) -> None:
        async def reached() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: self.count >= count)

        await asyncio.wait_for(reached(), WAIT)


# --- the contract ---------------------------------------------------------------


async def test_round_trip_keeps_every_field(harness: Harness) -> None:
    sent = Message(
        id=str(uuid4()),
        room_id=str(uuid4()),
        sender_id=str(uuid4()),
        body='héllo 👋 "quoted" \n line',
        created_at=datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=UTC),
        client_msg_id="client-1",
        seq=42,
        edited_at=datetime(2026, 11, 24, 10, 5, 0, 1, tzinfo=UTC),
        deleted=True,
    )
    received: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

    async def handler(batch: Sequence[Message]) -> None:
        (msg,) = batch
        received.set_result(msg)

    await harness.publisher.publish(sent)
    await harness.worker(handler)
    assert await asyncio.wait_for(received, WAIT) == sent


async def test_room_order_holds_across_many_rooms(harness: Harness) -> None:
    rooms = [f"room-{uuid4().hex[:6]}" for _ in range(10)]
    published: dict[str, list[str]] = defaultdict(list)

    async def publish_room(room: str) -> None:
        # Rooms publish concurrently; within a room, one after the other.
        for n in range(20):
            msg = message(room, n)
            await harness.publisher.publish(msg)
            published[room].append(msg.id)

    recorder = Recorder()
    await harness.worker(recorder)
    await asyncio.gather(*(publish_room(room) for room in rooms))
    await recorder.wait_for(200)
    assert recorder.stored == published


async def test_what_waits_in_a_partition_comes_as_one_batch_in_order(harness: Harness) -> None:
    msgs = [message("room-batch", n) for n in range(10)]
    first_in_hand, release = asyncio.Event(), asyncio.Event()

    class HoldsTheFirst(Recorder):
        async def handle(self, msg: Message) -> None:
            first_in_hand.set()
            await release.wait()

    recorder = HoldsTheFirst()
    await harness.worker(recorder)
    await harness.publisher.publish(msgs[0])
    await asyncio.wait_for(first_in_hand.wait(), WAIT)
    for msg in msgs[1:]:
        await harness.publisher.publish(msg)
    await asyncio.wait_for(harness.wait_delivered(), WAIT)  # all in the worker's hands
    release.set()
    await recorder.wait_for(10)
    assert recorder.batches == [1, 9]
    assert recorder.stored["room-batch"] == [m.id for m in msgs]


async def test_failed_handler_gets_the_message_again_in_order(harness: Harness) -> None:
    msgs = [message("room-retry", n) for n in range(5)]
    flaky = msgs[1].id

    class FailsOnce(Recorder):
        async def handle(self, msg: Message) -> None:
            if msg.id == flaky and self.attempts[msg.id] == 1:
                raise RuntimeError("database hiccup")

    recorder = FailsOnce()
    await harness.worker(recorder)
    for msg in msgs:
        await harness.publisher.publish(msg)
    await recorder.wait_for(5)
    assert recorder.stored["room-retry"] == [m.id for m in msgs]
    assert recorder.attempts[flaky] == 2
    assert recorder.count == 5  # stored once each, whatever batches they came in


async def test_poison_message_is_dead_lettered_and_the_room_moves_on(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    poison, nxt = message("room-poison", 0), message("room-poison", 1)

    class Poisoned(Recorder):
        async def handle(self, msg: Message) -> None:
            if msg.id == poison.id:
                raise ValueError("cannot store this one")

    recorder = Poisoned()
    await harness.worker(recorder)
    with caplog.at_level(logging.ERROR):
        await harness.publisher.publish(poison)
        await harness.publisher.publish(nxt)
        await recorder.wait_for(1)
    assert recorder.stored["room-poison"] == [nxt.id]
    assert recorder.alone[poison.id] == 3  # max_attempts on its own
    assert await harness.dead_letter() == poison
    assert any(r.levelno == logging.ERROR and poison.id in r.getMessage() for r in caplog.records)


async def test_no_ack_before_the_handler_returns(harness: Harness) -> None:
    msg = message("room-crash")
    started = asyncio.Event()

    async def hangs(_: Sequence[Message]) -> None:
        started.set()
        await asyncio.Event().wait()  # the worker dies before this returns

    first = await harness.worker(hangs)
    await harness.publisher.publish(msg)
    await asyncio.wait_for(started.wait(), WAIT)
    await first.kill()

    redelivered = sample("chat_broker_redelivered_total")
    recorder = Recorder()
    await harness.worker(recorder, await harness.make())
    await recorder.wait_for(1)
    assert recorder.stored["room-crash"] == [msg.id]
    if harness.kind == "rabbitmq":  # the in-memory broker is one process: no redelivery
        assert sample("chat_broker_redelivered_total") == redelivered + 1


async def test_close_lets_the_message_in_hand_finish(harness: Harness) -> None:
    first, second = message("room-close", 0), message("room-close", 1)
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def slow(batch: Sequence[Message]) -> None:
        started.set()
        await release.wait()
        finished.extend(msg.id for msg in batch)

    broker = await harness.make()
    await harness.worker(slow, broker)
    await harness.publisher.publish(first)
    await asyncio.wait_for(started.wait(), WAIT)

    closing = asyncio.create_task(broker.close())
    with pytest.raises(TimeoutError):  # close waits for the handler in hand
        await asyncio.wait_for(asyncio.shield(closing), 0.3)
    release.set()
    await asyncio.wait_for(closing, WAIT)
    assert finished == [first.id]

    if harness.kind == "rabbitmq":
        # It was acked: a new worker gets the next message, not the first one again.
        await harness.publisher.publish(second)
        recorder = Recorder()
        await harness.worker(recorder, await harness.make())
        await recorder.wait_for(1)
        assert recorder.stored["room-close"] == [second.id]


async def test_publish_after_close_is_unavailable(harness: Harness) -> None:
    broker = await harness.make()
    await broker.close()
    with pytest.raises(Unavailable):
        await asyncio.wait_for(broker.publish(message()), PUBLISH_TIMEOUT + 1)
    with pytest.raises(Unavailable):
        await broker.check()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class PoisonedUntilFixed(Recorder):
    """A store that fails the ``poisoned`` messages until the cause is fixed."""

    def __init__(self, poisoned: Sequence[Message]) -> None:
        super().__init__()
        self.poisoned = {m.id for m in poisoned}
        self.fixed = False

    async def handle(self, msg: Message) -> None:
        if msg.id in self.poisoned and not self.fixed:
            raise ValueError("room not found")


async def test_a_dead_letter_is_listed_until_replayed_then_stored_once(harness: Harness) -> None:
    poison, nxt = message("room-dead", 0), message("room-dead", 1)
    dead_before = sample("chat_broker_dead_lettered_total")
    recorder = PoisonedUntilFixed([poison])
    await harness.worker(recorder)
    await harness.publisher.publish(poison)
    await harness.publisher.publish(nxt)
    assert await harness.dead_letter() == poison
    await recorder.wait_for(1)
    assert sample("chat_broker_dead_lettered_total") == dead_before + 1
    partition = str(partition_of("room-dead", PARTITIONS))
    lag = REGISTRY.get_sample_value("chat_broker_consume_lag_seconds", {"partition": partition})
    assert lag is not None and lag >= 0  # the partition's last handled message
    assert sample("chat_broker_batch_size_count") > 0

    for _ in range(2):  # listing takes nothing away
        (listed,) = await harness.publisher.dead_letters(10)
        assert (listed.message_id, listed.message) == (poison.id, poison)
        assert listed.reason and listed.dead_lettered_at is not None

    recorder.fixed = True
    assert await harness.publisher.replay_dead_letters(None) == [poison.id]
    await recorder.wait_for(2)
    assert recorder.stored["room-dead"] == [nxt.id, poison.id]  # once, after the fix
    assert await harness.publisher.dead_letters(10) == []
    assert await harness.publisher.replay_dead_letters(None) == []


async def test_listing_and_replaying_some_dead_letters_keeps_the_others_in_order(
    harness: Harness,
) -> None:
    # More than 32: a quorum queue given back that many unsettled at once reorders them.
    start = datetime.now(UTC)
    poisoned = [
        replace(message("room-many", n), created_at=start + timedelta(milliseconds=n))
        for n in range(40)
    ]
    recorder = PoisonedUntilFixed(poisoned)
    await harness.worker(recorder)
    for msg in poisoned:
        await harness.publisher.publish(msg)

    async def all_dead() -> None:
        while len(await harness.publisher.dead_letters(100)) < len(poisoned):  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # no event tells a dead letter has arrived: poll

    await asyncio.wait_for(all_dead(), WAIT)
    # Listed in the order they were set aside, the same at every listing.
    ids = [d.message_id for d in await harness.publisher.dead_letters(100)]
    assert sorted(ids) == sorted(m.id for m in poisoned)
    assert [d.message_id for d in await harness.publisher.dead_letters(100)] == ids
    assert [d.message_id for d in await harness.publisher.dead_letters(5)] == ids[:5]

    recorder.fixed = True
    chosen = [m.id for m in poisoned[::2]]  # in acceptance order: their room's order
    assert await harness.publisher.replay_dead_letters(set(chosen)) == chosen
    await recorder.wait_for(len(chosen))
    assert recorder.stored["room-many"] == chosen
    left = [d.message_id for d in await harness.publisher.dead_letters(100)]
    assert left == [i for i in ids if i not in chosen]
    assert await harness.publisher.replay_dead_letters({"no-such-id"}) == []


# Only a broker with a wire format can hold a message it cannot read.
@pytest.mark.parametrize("harness", ["rabbitmq"], indirect=True)
async def test_an_unreadable_dead_letter_is_listed_and_never_replayed(harness: Harness) -> None:
    recorder = Recorder()
    await harness.worker(recorder)
    connection = await aio_pika.connect(require(RABBITMQ).url)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(f"{harness.prefix}.messages")
        await exchange.publish(aio_pika.Message(b"not json", message_id="garbled"), "0")
    finally:
        await connection.close()

    async def listed() -> list[DeadLetter]:
        while not (dead := await harness.publisher.dead_letters(10)):  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # no event tells a dead letter has arrived: poll
        return dead

    (dead,) = await asyncio.wait_for(listed(), WAIT)
    assert (dead.message_id, dead.message) == ("garbled", None)
    assert await harness.publisher.replay_dead_letters(None) == []
    assert [d.message_id for d in await harness.publisher.dead_letters(10)] == ["garbled"]
    assert recorder.count == 0


# The in-memory broker is never unreachable while open: this one is RabbitMQ's alone.
@pytest.mark.parametrize("harness", ["rabbitmq"], indirect=True)
async def test_publish_to_an_unreachable_broker_is_unavailable_in_time(
    harness: Harness,
) -> None:
    broker = RabbitMQBroker("amqp://guest:guest@127.0.0.1:1/", publish_timeout=1.0)
    await asyncio.wait_for(broker.start(), 1.0)  # a server still boots
    try:
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(Unavailable):
            await asyncio.wait_for(broker.publish(message()), 5.0)
        assert loop.time() - began < 3.0
        with pytest.raises(Unavailable):
            await broker.check()
    finally:
        await asyncio.wait_for(broker.close(), 5.0)


async def test_two_workers_never_share_a_room_and_one_takes_over(harness: Harness) -> None:
    rooms = [f"room-{uuid4().hex[:6]}" for _ in range(5)]
    busy: set[str] = set()
    overlaps: list[str] = []
    handled_by: dict[str, int] = defaultdict(int)
    a_did_some, release = asyncio.Event(), asyncio.Event()
    recorder = Recorder()

    def as_worker(name: str) -> MessageBatchHandler:
        async def work(msg: Message) -> None:
            if msg.room_id in busy:
                overlaps.append(msg.id)
            busy.add(msg.room_id)
            try:
                await asyncio.sleep(0.002)  # widen the window an overlap would need
            finally:
                busy.discard(msg.room_id)  # also when a killed worker's handler stops
            handled_by[name] += 1
            if name == "a" and handled_by["a"] == 20:
                a_did_some.set()
                await release.wait()  # a leaves with this in hand and a backlog behind it

        return functools.partial(recorder.run, work=work)

    broker_a, broker_b = await harness.make(), await harness.make()
    worker_a = await harness.worker(as_worker("a"), broker_a)
    await harness.wait_consumers(1)  # a is the active consumer everywhere
    await harness.worker(as_worker("b"), broker_b)
    await harness.wait_consumers(2)

    published: dict[str, list[str]] = defaultdict(list)

    async def publish(numbers: range) -> None:
        for n in numbers:
            msg = message(rooms[n % 5], n)
            await harness.publisher.publish(msg)
            published[msg.room_id].append(msg.id)

    await publish(range(50))
    await asyncio.wait_for(a_did_some.wait(), WAIT)
    if harness.kind == "memory":
        await worker_a.kill()  # one process: a worker leaving is its consume() ending
    else:
        closing = asyncio.create_task(broker_a.close())
        release.set()  # close lets the message in hand finish
        await asyncio.wait_for(closing, WAIT)
    await publish(range(50, 100))  # only b is left to take these
    await recorder.wait_for(100)
    assert overlaps == []
    assert dict(recorder.stored) == published
    assert handled_by["b"] > 0  # b took over


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None and not in_ci(), reason="needs rabbitmqctl")
@pytest.mark.parametrize("harness", ["rabbitmq"], indirect=True)
async def test_rabbitmq_recovers_after_losing_its_connections(harness: Harness) -> None:
    recorder = Recorder()
    worker = await harness.make()
    await harness.worker(recorder, worker)
    await harness.wait_consumers(1)
    await harness.publisher.publish(before := message("room-rec", 0))
    await recorder.wait_for(1)

    closed = await close_connections(f"chat-broker {harness.prefix}")
    assert closed >= 2  # the publisher's and the worker's

    # The publisher waits for its reconnection (within its timeout), the consumer too.
    after = message("room-rec", 1)
    await asyncio.wait_for(publish_when_back(harness.publisher, after), WAIT)
    await recorder.wait_for(2)
    assert recorder.stored["room-rec"] == [before.id, after.id]
    await asyncio.wait_for(until_ready(worker), WAIT)
    await harness.wait_consumers(1)


@pytest.mark.parametrize("harness", ["rabbitmq"], indirect=True)
async def test_rabbitmq_close_acknowledges_what_waits_for_its_ack_delay(harness: Harness) -> None:
    first, second = message("room-owed", 0), message("room-owed", 1)
    recorder = Recorder()
    broker = await harness.make(ack_delay=60.0)  # far beyond the test: only close acks it
    await harness.worker(recorder, broker)
    await harness.publisher.publish(first)
    await recorder.wait_for(1)
    await asyncio.wait_for(broker.close(), WAIT)

    # It was acknowledged: the next worker gets the next message, not the first again.
    await harness.publisher.publish(second)
    following = Recorder()
    await harness.worker(following, await harness.make())
    await following.wait_for(1)
    assert following.stored["room-owed"] == [second.id]


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None and not in_ci(), reason="needs rabbitmqctl")
@pytest.mark.parametrize("harness", ["rabbitmq"], indirect=True)
async def test_rabbitmq_acknowledges_handled_batches_together_within_the_ack_delay(
    harness: Harness,
) -> None:
    batches = [message("room-late-ack", n) for n in range(3)]
    recorder = Recorder()
    worker = await harness.make(ack_delay=0.3)
    await harness.worker(recorder, worker)
    await harness.wait_consumers(1)
    for msg in batches:
        await harness.publisher.publish(msg)
        await recorder.wait_for(batches.index(msg) + 1)  # one batch each

    async def all_settled() -> None:
        queues = set(harness.publisher.queue_names())
        while True:
            lines = await rabbitmqctl(
                "list_queues", "-q", "--no-table-headers", "name", "messages_unacknowledged"
            )
            unacked = {n: int(c) for n, c in (line.split("\t") for line in lines) if n in queues}
            if len(unacked) == len(queues) and not any(unacked.values()):
                return
            await asyncio.sleep(0.1)  # no event tells a settle: poll

    await asyncio.wait_for(all_settled(), WAIT)
    # Settled for good: a lost connection brings none of them back.
    assert await close_connections(f"chat-broker {harness.prefix}") >= 2
    after = message("room-late-ack", 3)
    await asyncio.wait_for(publish_when_back(harness.publisher, after), WAIT)
    await recorder.wait_for(4)
    assert recorder.stored["room-late-ack"] == [m.id for m in [*batches, after]]


async def publish_when_back(broker: MessageBroker, msg: Message) -> None:
    while True:
        try:
            return await broker.publish(msg)
        except Unavailable:
            continue  # each try already waited up to PUBLISH_TIMEOUT


async def rabbitmqctl(*args: str) -> list[str]:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0, f"rabbitmqctl {args} failed"
    return out.decode().splitlines()


async def close_connections(name: str) -> int:
    """Drop only this test's client connections (other tests share the server)."""
    lines = await rabbitmqctl(
        "list_connections", "-q", "--no-table-headers", "pid", "client_properties"
    )
    pids = [line.split("\t")[0] for line in lines if f'"{name}"' in line]
    for pid in pids:
        await rabbitmqctl("close_connection", pid, "test: connection loss")
    return len(pids)


# --- a worker group spreads the partitions (RabbitMQ: the in-memory broker is one process)


def room_per_partition(partitions: int) -> list[str]:
    """A room id in each partition, partition ``i`` at index ``i``."""
    rooms: dict[int, str] = {}
    while len(rooms) < partitions:
        room = f"room-{uuid4().hex[:8]}"
        rooms.setdefault(partition_of(room, partitions), room)
    return [rooms[i] for i in range(partitions)]


class Spread:
    """Workers of one group, what each handled, and rounds of one message per partition."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.rooms = room_per_partition(PARTITIONS)
        self.recorder = Recorder()
        self.handled_by: dict[str, set[int]] = defaultdict(set)  # worker -> partitions
        self.published: dict[str, list[str]] = defaultdict(list)
        self.sent = 0

    def handler(self, worker: str) -> MessageBatchHandler:
        async def work(msg: Message) -> None:
            self.handled_by[worker].add(self.rooms.index(msg.room_id))
            await asyncio.sleep(0.001)  # a store takes time: handovers meet work in hand

        return functools.partial(self.recorder.run, work=work)

    async def until_shared_by(self, *workers: str) -> None:
        """Publish rounds until one round was handled by exactly ``workers``, each partition
        by one of them, their counts within one of each other (the group balances by
        count until it has measured loads: these rounds load every partition alike)."""

        def shared(split: dict[str, frozenset[int]]) -> bool:
            counts = [len(split.get(w, ())) for w in workers]
            every = [p for w in workers for p in split.get(w, ())]
            return (
                set(split) == set(workers)
                and sorted(every) == list(range(PARTITIONS))
                and max(counts) - min(counts) <= 1
            )

        await self._until(shared)

    async def until_split(self, expected: dict[str, frozenset[int]]) -> None:
        """Publish rounds until one round was handled exactly as ``expected`` splits it."""
        await self._until(lambda split: split == expected)

    async def _until(self, done: Callable[[dict[str, frozenset[int]]], bool]) -> None:

        async def rounds() -> None:
            while True:
                self.handled_by.clear()
                for n, room in enumerate(self.rooms):
                    msg = message(room, n)
                    await self.harness.publisher.publish(msg)
                    self.published[room].append(msg.id)
                self.sent += len(self.rooms)
                await self.recorder.wait_for(self.sent)
                if done({w: frozenset(p) for w, p in self.handled_by.items()}):
                    return

        await asyncio.wait_for(rounds(), WAIT)


@pytest.mark.parametrize("harness", ["rabbitmq"], indirect=True)
async def test_a_group_splits_the_partitions_and_follows_joins_and_leaves(
    harness: Harness,
) -> None:
    spread = Spread(harness)
    roster = InMemoryWorkerGroup(lease_seconds=0.5)
    groups = {name: roster.another_member() for name in ("a", "b", "c")}

    brokers = {}
    for name in ("a", "b"):
        brokers[name] = await harness.make(group=groups[name])
        await harness.worker(spread.handler(name), brokers[name])
    await spread.until_shared_by("a", "b")  # both consume, each its own share

    brokers["c"] = await harness.make(group=groups["c"])
    await harness.worker(spread.handler("c"), brokers["c"])
    await spread.until_shared_by("a", "b", "c")  # c joins: shares move to it

    await asyncio.wait_for(brokers["b"].close(), WAIT)  # b leaves gracefully
    await spread.until_shared_by("a", "c")

    assert dict(spread.recorder.stored) == spread.published  # once each, in order


@pytest.mark.parametrize("harness", ["rabbitmq"], indirect=True)
async def test_a_member_reports_the_messages_it_handled_per_partition(harness: Harness) -> None:
    spread = Spread(harness)
    group = InMemoryWorkerGroup(lease_seconds=0.5)
    await harness.worker(spread.handler("a"), await harness.make(group=group))
    await spread.until_shared_by("a")  # every partition handled at least once
    handled = spread.sent

    async def reported() -> dict[int, int]:
        while True:
            counted = dict((await group.beat({})).counted)
            if sum(counted.values()) >= handled:
                return counted
            await asyncio.sleep(group.heartbeat_seconds)  # reported at the worker's beat

    counted = await asyncio.wait_for(reported(), WAIT)
    assert sorted(counted) == list(range(PARTITIONS))  # the loads the plan balances


@pytest.mark.parametrize("harness", ["rabbitmq"], indirect=True)
async def test_a_dead_members_partitions_go_to_the_others_after_its_lease(
    harness: Harness,
) -> None:
    spread = Spread(harness)
    roster = InMemoryWorkerGroup(lease_seconds=0.5)
    a, b = roster.another_member(), roster.another_member()
    await harness.worker(spread.handler("a"), await harness.make(group=a))
    dies = await harness.worker(spread.handler("b"), await harness.make(group=b))
    await spread.until_shared_by("a", "b")

    await dies.kill()  # no leave: its lease runs out
    await spread.until_split({"a": frozenset(range(PARTITIONS))})
    for room in spread.rooms:  # in order; a redelivery after the kill may repeat one
        stored = list(dict.fromkeys(spread.recorder.stored[room]))
        assert stored == spread.published[room]


@pytest.mark.parametrize("harness", ["rabbitmq"], indirect=True)
async def test_a_worker_cut_off_from_its_group_consumes_every_partition(
    harness: Harness,
) -> None:
    nowhere = RedisWorkerGroup(f"redis://127.0.0.1:{free_port()}/0", "nowhere", lease_seconds=0.3)
    spread = Spread(harness)
    await harness.worker(spread.handler("a"), await harness.make(group=nowhere))
    # Without the group's answer it cannot know its share: after a lease it takes them
    # all (single-active-consumer still fences each), rather than storing nothing.
    await spread.until_split({"a": frozenset(range(PARTITIONS))})


@pytest.mark.parametrize("harness", ["rabbitmq"], indirect=True)
async def test_start_up_warns_of_messages_left_beyond_the_partitions(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    stranded = message(room_per_partition(PARTITIONS)[PARTITIONS - 1])
    await harness.publisher.publish(stranded)  # in the last of PARTITIONS queues
    with caplog.at_level(logging.WARNING):
        fewer = await harness.make(partitions=PARTITIONS - 1)
        await asyncio.wait_for(until_ready(fewer), WAIT)
    last = f"{harness.prefix}.messages.{PARTITIONS - 1}"
    assert any(
        last in r.getMessage() and "holds 1 messages" in r.getMessage() for r in caplog.records
    )
