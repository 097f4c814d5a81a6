"""Several `chat worker`s share the partitions: each stores its share, and the shares follow
workers joining, leaving and dying, with every accepted message stored once, gapless and in
order per room (docs/scaling.md, "Worker group").

Each room has one sender that waits for a message's 202 before sending the next, so the
order the server accepted a room's messages in is the order they must be stored in.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.clients import Account, Api
from tests.support.cluster import Cluster, cluster
from tests.support.metrics import scrape_url
from tests.support.rabbitmq import DEFAULT_PARTITIONS
from tests.support.services import POSTGRES, RABBITMQ, REDIS, require
from tests.support.traffic import wait_stored

pytestmark = pytest.mark.slow
ROOMS = 16
WAIT = 90.0
# One user sends to every room here: the per-user send limit is not what is tested.
OVERRIDES = {"CHAT_RATE_SEND_PER_SECOND": "0"}


@pytest.fixture
def nodes(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    for service in (POSTGRES, RABBITMQ, REDIS):
        require(service)
    with cluster(tmp_path, servers=2, workers=request.param, overrides=OVERRIDES) as c:
        yield c


class Traffic:
    """Alice and bob in ``ROOMS`` rooms, alice sending to each room in turn."""

    def __init__(self, nodes: Cluster) -> None:
        self.nodes = nodes
        self.apis = [Api(s.url) for s in nodes.servers]
        self.accepted: dict[str, list[str]] = {}
        self.stop = asyncio.Event()
        self._count = asyncio.Condition()

    async def setup(self) -> None:
        self.alice: Account = await self.apis[0].signup("alice")
        bob = await self.apis[0].signup("bob")
        for _ in range(ROOMS):
            room = await self.apis[0].create_room(self.alice, bob)
            self.accepted[room["id"]] = []

    @property
    def total(self) -> int:
        return sum(map(len, self.accepted.values()))

    async def send(self, per_room: int) -> None:
        """Send until ``stop`` is set or ``per_room`` messages per room were accepted."""
        await asyncio.gather(*(self._room(room, per_room) for room in self.accepted))

    async def _room(self, room: str, per_room: int) -> None:
        for n in range(per_room):
            if self.stop.is_set():
                return
            key = f"group-{uuid.uuid4()}"
            deadline = asyncio.get_running_loop().time() + WAIT
            while True:  # retry 503s and cut connections with the same client_msg_id
                api = self.apis[(n + len(self.accepted[room])) % len(self.apis)]
                try:
                    r = await api.send(self.alice, room, f"message {n}", client_msg_id=key)
                except httpx.HTTPError:
                    r = None
                if r is not None and r.status_code == 202:
                    break
                assert r is None or r.status_code == 503, r.text
                assert asyncio.get_running_loop().time() < deadline, "never accepted"
                n += 1  # the next try goes to the other node
                await asyncio.sleep(0.2)  # back-off between retries, not synchronisation
            async with self._count:
                self.accepted[room].append(r.json()["message"]["id"])
                self._count.notify_all()

    async def until_accepted(self, count: int) -> None:
        async with self._count:
            await asyncio.wait_for(self._count.wait_for(lambda: self.total >= count), WAIT)

    async def check(self) -> None:
        """Every accepted message stored once, each room's seq gapless, in accepted order."""
        for room, accepted in self.accepted.items():
            try:
                stored = await wait_stored(self.apis[1], self.alice, room, len(accepted))
            except TimeoutError as exc:
                logs = "\n".join(f"--- {w.name}\n{w.log()[-3000:]}" for w in self.nodes.workers)
                raise TimeoutError(f"{exc}\n{logs}") from exc
            assert [m["seq"] for m in stored] == list(range(1, len(accepted) + 1))
            assert [m["id"] for m in stored] == accepted, "lost, repeated or out of order"

    async def close(self) -> None:
        for api in self.apis:
            await api.close()


async def metric(nodes: Cluster, worker: str, name: str) -> float:
    return (await scrape_url(nodes.metrics_urls[worker])).get(name, 0.0)


async def held(nodes: Cluster, workers: list[str]) -> list[int]:
    return [int(await metric(nodes, w, "chat_worker_partitions_held")) for w in workers]


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``condition`` (a process's state over HTTP or rabbitmqctl: no event to await)."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"never: {what}"
        await asyncio.sleep(0.25)


def evenly_split(shares: list[int]) -> bool:
    """Every partition held, each by one of ``shares``' workers, within one of each other."""
    return sum(shares) == DEFAULT_PARTITIONS and max(shares) - min(shares) <= 1


async def rabbitmqctl(*args: str) -> list[list[str]]:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", *args, "--no-table-headers", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0, f"rabbitmqctl {args} failed"
    return [line.split("\t") for line in out.decode().splitlines()]


async def active_per_connection(prefix: str) -> list[int]:
    """How many of our partitions each AMQP connection is the active consumer of."""
    channels = {pid: conn for pid, conn in await rabbitmqctl("list_channels", "pid", "connection")}
    actives = Counter(
        channels.get(channel, channel)
        for queue, channel, active in await rabbitmqctl(
            "list_consumers", "queue_name", "channel_pid", "active"
        )
        if queue.startswith(f"{prefix}.messages.") and active == "true"
    )
    return sorted(actives.values())


@pytest.mark.parametrize("nodes", [2], indirect=True)
async def test_two_workers_each_consume_half_of_the_partitions(nodes: Cluster) -> None:
    traffic = Traffic(nodes)
    await traffic.setup()
    try:
        workers = ["worker1", "worker2"]

        async def split() -> bool:
            return evenly_split(await held(nodes, workers))

        await until(split, "both workers hold half of the partitions")
        if shutil.which("rabbitmqctl"):  # and RabbitMQ says so: two active connections

            async def two_active() -> bool:
                shares = await active_per_connection(nodes.prefix)
                return len(shares) == 2 and evenly_split(shares)

            await until(two_active, "RabbitMQ has an active consumer of half on each worker")
        await traffic.send(per_room=25)
        await traffic.check()
        for worker in workers:  # 16 rooms over 32 partitions: both get some
            assert await metric(nodes, worker, "chat_messages_stored_total") > 0, worker
        for process in nodes.workers:
            assert "partitions rebalanced" in process.log()
    finally:
        await traffic.close()


@pytest.mark.parametrize("nodes", [1], indirect=True)
async def test_a_worker_added_mid_burst_takes_its_share(nodes: Cluster) -> None:
    traffic = Traffic(nodes)
    await traffic.setup()
    try:
        sending = asyncio.create_task(traffic.send(per_room=400))
        await traffic.until_accepted(100)
        nodes.add_worker()

        async def joined() -> bool:
            return await metric(nodes, "worker2", "chat_messages_stored_total") >= 30

        await until(joined, "the added worker stores messages")
        traffic.stop.set()
        await sending
        await traffic.check()
        shares = await held(nodes, ["worker1", "worker2"])
        assert evenly_split(shares), shares
    finally:
        traffic.stop.set()
        await traffic.close()


@pytest.mark.parametrize("nodes", [2], indirect=True)
async def test_a_worker_killed_mid_burst_while_another_joins(nodes: Cluster) -> None:
    traffic = Traffic(nodes)
    await traffic.setup()
    try:
        sending = asyncio.create_task(traffic.send(per_room=400))
        await traffic.until_accepted(100)

        async def both_store() -> bool:
            counts = [
                await metric(nodes, w, "chat_messages_stored_total") for w in nodes.metrics_urls
            ]
            return all(count > 0 for count in counts)

        await until(both_store, "both workers store messages")
        nodes.workers[0].kill()
        nodes.add_worker()

        async def taken_over() -> bool:
            return evenly_split(await held(nodes, ["worker2", "worker3"]))

        # The killed worker's partitions wait for its lease to run out, then move.
        await until(taken_over, "the two live workers hold every partition")
        accepted = traffic.total
        await traffic.until_accepted(accepted + 100)
        traffic.stop.set()
        await sending
        await traffic.check()
        assert await metric(nodes, "worker3", "chat_messages_stored_total") > 0
    finally:
        traffic.stop.set()
        await traffic.close()
