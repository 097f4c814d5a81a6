"""Server CPU per message with 1, 2 or 4 `chat serve` nodes, targeted delivery on or off.

A quick before/after figure for targeted delivery (docs/scaling.md), not the benchmark:
direct rooms whose two members listen on two different nodes (node i and i+1; or rooms
of ``--size`` members, member i on node i mod n), a fixed
rate of sends for a fixed time, and the CPU time (utime + stime) the server processes,
all nodes together, and the worker spent meanwhile, per message sent; also net of what
the nodes spend idle, and how many events the nodes read from Redis per message.

    .venv/bin/python -m loadtests.fanout_cpu --nodes 1,2,4 --rate 100 --seconds 20

"Off" (``CHAT_SOCKETIO_TARGETED_DELIVERY=false``) publishes every event to every node as
before; the nodes still list themselves in the directory, which costs only on connect.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets

import asyncpg

from loadtests.driver import Population
from loadtests.targets import (
    BENCH_ENV,
    CHAT,
    POSTGRES_ADMIN_DSN,
    Process,
    Target,
    cpu_seconds,
    free_port,
)

DRAIN_S = 10.0
IDLE_S = 10.0
METRIC = "chat_socketio_redis_events_received_total"


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def start(nodes: int, targeted: bool) -> Target:
    tag = secrets.token_hex(4)
    target = Target(f"fanout-{nodes}", database=f"chat_bench_{tag}", prefix=f"bench-{tag}")
    env = {
        **BENCH_ENV,
        "CHAT_BROKER": "rabbitmq",
        "CHAT_SOCKETIO_MANAGER": "redis",
        "CHAT_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{target.database}",
        "CHAT_RABBITMQ_PREFIX": f"bench-{tag}",
        "CHAT_REDIS_CHANNEL": f"bench-{tag}",
        "CHAT_SECRET_KEY": secrets.token_urlsafe(48),
        "CHAT_SOCKETIO_TARGETED_DELIVERY": "true" if targeted else "false",
    }
    await _admin(f'CREATE DATABASE "{target.database}"')
    migrate = Process("migrate", [CHAT, "migrate"], target.workdir, env).start()
    assert migrate.proc is not None
    if await asyncio.to_thread(migrate.proc.wait) != 0:
        target.stop()
        raise RuntimeError(migrate.log_tail())
    for node in range(nodes):
        port = free_port()
        args = [CHAT, "serve", "--host", "127.0.0.1", "--port", str(port)]
        url = f"http://127.0.0.1:{port}"
        target.add(Process(f"server-{node + 1}", args, target.workdir, env, url=url))
    target.add(Process("worker", [CHAT, "worker"], target.workdir, env))
    for process in target.processes:
        if process.url is not None:
            await asyncio.to_thread(process.wait_healthy)
    return target


async def events_read(population: Population, urls: list[str]) -> float:
    """Socket.io events the nodes read from Redis so far, all nodes together."""
    total = 0.0
    for url in urls:
        async with population.rest.get(f"{url}/metrics") as r:
            for line in (await r.text()).splitlines():
                if line.startswith(METRIC):
                    total += float(line.rsplit(" ", 1)[1])
    return total


def cpu(target: Target) -> tuple[float, float]:
    """(CPU seconds of the server processes, of the worker) so far."""
    servers = worker = 0.0
    for p in target.processes:
        if p.proc is not None and p.proc.poll() is None:
            if p.url is None:
                worker += cpu_seconds(p.proc.pid)
            else:
                servers += cpu_seconds(p.proc.pid)
    return servers, worker


async def measure(
    nodes: int, targeted: bool, rate: float, seconds: float, rooms: int, size: int
) -> str:
    target = await start(nodes, targeted)
    population = Population(target.urls)
    try:
        members = await population.add_users(size * rooms)
        for k in range(rooms):  # member i listens on node i (mod n): a room spans nodes
            await population.add_room(members[size * k : size * (k + 1)], senders=2)
        await population.connect_all()
        senders = population.senders()
        loop = asyncio.get_running_loop()

        async def run(duration: float) -> int:
            tasks: set[asyncio.Task[None]] = set()
            begin, sent = loop.time(), 0
            while (at := begin + sent / rate) < begin + duration:
                await asyncio.sleep(max(0.0, at - loop.time()))
                sender, room = senders[sent % len(senders)]
                task = asyncio.create_task(population.send(sender, room, loop.time()))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.gather(*tasks)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(population.tracker.settled.wait(), DRAIN_S)
            return sent

        population.tracker.new_phase()
        await run(3.0)  # warm-up: connections, caches, lazy imports
        # What the nodes cost doing nothing (timers, pings), subtracted from the busy phase.
        idle0, _ = cpu(target)
        await asyncio.sleep(IDLE_S)
        idle_rate = (cpu(target)[0] - idle0) / IDLE_S
        stats = population.tracker.new_phase()
        read0 = await events_read(population, target.urls)
        servers0, worker0, t0 = *cpu(target), loop.time()
        sent = await run(seconds)
        servers1, worker1, t1 = *cpu(target), loop.time()
        read = await events_read(population, target.urls) - read0
        lost = population.tracker.lost()
        busy = servers1 - servers0
        return (
            f"nodes={nodes} targeted={'on ' if targeted else 'off'} sent={sent} "
            f"accepted={stats.accepted} lost={lost} "
            f"server_ms_per_msg={busy * 1000 / sent:.2f} "
            f"net_of_idle={(busy - idle_rate * (t1 - t0)) * 1000 / sent:.2f} "
            f"worker_ms_per_msg={(worker1 - worker0) * 1000 / sent:.2f} "
            f"events_read_per_msg={read / sent:.2f}"
        )
    finally:
        await population.close()
        await asyncio.to_thread(target.stop)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1,2,4")
    parser.add_argument("--rate", type=float, default=100.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--size", type=int, default=2, help="members per room (2: direct)")
    parser.add_argument("--modes", default="off,on", help="targeted delivery: off,on")
    args = parser.parse_args()
    for nodes in [int(n) for n in args.nodes.split(",")]:
        for mode in args.modes.split(","):
            line = await measure(
                nodes, mode == "on", args.rate, args.seconds, args.rooms, args.size
            )
            print(line, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
