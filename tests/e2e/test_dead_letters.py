"""A message no worker can store ends in the dead letters: the worker's /metrics counts it,
`chat dead-letters list` shows it, and once the cause is fixed `chat dead-letters replay`
sends it through the normal path, where it is stored exactly once."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from chat_adapters.rabbitmq.broker import RabbitMQBroker
from chat_adapters.rabbitmq.codec import partition_of
from chat_domain.entities import Message
from tests.support.clients import Api
from tests.support.cluster import Cluster, cluster
from tests.support.metrics import scrape_url
from tests.support.processes import CHAT, clean_env
from tests.support.rabbitmq import DEFAULT_PARTITIONS
from tests.support.services import POSTGRES, RABBITMQ, REDIS, require

pytestmark = pytest.mark.slow
WAIT = 60.0
MAX_ATTEMPTS = 2  # so that the message is set aside quickly


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    for service in (POSTGRES, RABBITMQ, REDIS):
        require(service)
    with cluster(
        Path(tmp_path_factory.mktemp("dead-letters")),
        servers=1,
        workers=1,
        overrides={"CHAT_RABBITMQ_MAX_ATTEMPTS": str(MAX_ATTEMPTS)},
    ) as c:
        yield c


def chat(nodes: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHAT, *args],
        cwd=nodes.workdir,
        env=clean_env(nodes.env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def publish(nodes: Cluster, message: Message) -> None:
    """Straight onto the message's partition, as a server does once a send is accepted."""
    broker = RabbitMQBroker(
        RABBITMQ.url,
        prefix=nodes.prefix,
        partitions=DEFAULT_PARTITIONS,
        max_attempts=MAX_ATTEMPTS,  # the queues' arguments must match the cluster's
    )
    await broker.start()
    try:
        await broker.publish(message)
    finally:
        await broker.close()


async def sql(nodes: Cluster, query: str, *args: object) -> object:
    conn = await asyncpg.connect(nodes.database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


async def until(condition: object, what: str) -> None:
    async def check() -> None:
        while not await condition():  # type: ignore[operator]  # noqa: ASYNC110
            await asyncio.sleep(0.2)  # another process's state: nothing to wait on but a look

    try:
        await asyncio.wait_for(check(), WAIT)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def test_a_poison_message_is_counted_listed_and_replayed_once_fixed(
    nodes: Cluster,
) -> None:
    api = Api(nodes.servers[0].url)
    try:
        alice = await api.signup("alice")
    finally:
        await api.close()
    metrics = nodes.metrics_urls["worker1"]

    async def dead_lettered() -> float:
        return (await scrape_url(metrics)).get("chat_broker_dead_lettered_total", -1.0)

    await until(lambda: _at_least(dead_lettered, 0), "the worker's /metrics")
    before = await dead_lettered()

    # A message for a room that does not exist (yet): storing it fails every time.
    room_id = str(uuid.uuid4())
    poison = Message(
        id=str(uuid.uuid4()),
        room_id=room_id,
        sender_id=alice.id,
        body="held up",
        created_at=datetime.now(UTC),
    )
    await publish(nodes, poison)
    await until(lambda: _at_least(dead_lettered, before + 1), "the dead-letter metric")

    listed = chat(nodes, "dead-letters", "list")
    assert listed.returncode == 0, listed.stderr
    (line,) = [row for row in listed.stdout.splitlines() if row.startswith(poison.id)]
    assert line.split("\t")[1:3] == [room_id, alice.id]
    assert chat(nodes, "dead-letters", "list").stdout == listed.stdout  # nothing taken away

    # The fix: the room now exists, alice in it.
    now = datetime.now(UTC)
    await sql(
        nodes,
        "INSERT INTO rooms (id, name, kind, created_at, last_seq) VALUES ($1, 'fixed', "
        "'group', $2, 0)",
        room_id,
        now,
    )
    await sql(
        nodes,
        "INSERT INTO memberships (room_id, user_id, role, joined_at) VALUES ($1, $2, 'owner', $3)",
        room_id,
        alice.id,
        now,
    )

    replayed = chat(nodes, "dead-letters", "replay", poison.id)
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed {poison.id}" in replayed.stdout

    async def stored() -> bool:
        count = await sql(nodes, "SELECT count(*) FROM messages WHERE id = $1", poison.id)
        return count == 1

    await until(stored, "the replayed message to be stored")
    partition = partition_of(room_id, DEFAULT_PARTITIONS)
    seen = await scrape_url(metrics)
    assert f'chat_broker_consume_lag_seconds{{partition="{partition}"}}' in seen
    assert seen["chat_broker_batch_size_count"] >= 1
    assert await sql(nodes, "SELECT seq FROM messages WHERE id = $1", poison.id) == 1
    assert poison.id not in chat(nodes, "dead-letters", "list").stdout
    again = chat(nodes, "dead-letters", "replay", poison.id)
    assert again.returncode == 1 and "not among the dead letters" in again.stderr


def test_dead_letters_need_rabbitmq_and_say_so(nodes: Cluster) -> None:
    memory = subprocess.run(
        [CHAT, "dead-letters", "list"],
        cwd=nodes.workdir,
        env=clean_env({"CHAT_BROKER": "memory"}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert memory.returncode == 2
    assert "set CHAT_BROKER=rabbitmq" in memory.stderr and "Traceback" not in memory.stderr
    unreachable = subprocess.run(
        [CHAT, "dead-letters", "list"],
        cwd=nodes.workdir,
        env=clean_env(
            nodes.env
            | {
                "CHAT_RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:1/",
                "CHAT_BROKER_PUBLISH_TIMEOUT": "1",
            }
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unreachable.returncode == 1, unreachable.stderr
    # The client library logs its reconnection attempts; the verdict is the last line.
    verdict = unreachable.stderr.splitlines()[-1]
    assert verdict.startswith("chat dead-letters list: cannot reach RabbitMQ at amqp://guest:****@")
    both = chat(nodes, "dead-letters", "replay", "--all", "some-id")
    assert both.returncode == 2 and "not both" in both.stderr


async def _at_least(read: object, value: float) -> bool:
    return bool(await read() >= value)  # type: ignore[operator]
