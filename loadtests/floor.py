"""The floor under the cluster's CPU per message, measured beside the cluster in one run.

    python -m loadtests.floor --rate 200 --before /path/to/old/.venv/bin/python

Issue 22's third goal asks the whole cluster (servers, workers, RabbitMQ, PostgreSQL,
Redis) for at most 0.6x of the CPU per message of the code it was filed against, at 200
msg/s on 2 server nodes and 1 worker. This mode measures, in the same window:

- **cluster**: the scaling mode's 2-node, 1-worker phases (``loadtests.scaling``), run by
  this checkout's Python and, with ``--before``, by another checkout's Python (its venv's
  ``chat`` is what the bench starts), alternating which goes first in each round;
- **reference**: the same workloads, same rate, same users, rooms and senders, against
  the bench's reference server (bare hypercorn + python-socketio in one process: no
  broker, no database, no checks; ``loadtests.reference_server``);
- **services**: what RabbitMQ, PostgreSQL and Redis spend on the operations every message
  needs, driven by bare clients with nothing of ours in between: one persistent publish
  with a publisher confirm to a queue declared like ours, delivered and acknowledged one
  by one; the send's membership check and the store's numbered insert, each message in
  its own transaction; one publish per server node, read by each node's subscriber.

``floor`` = reference + services: what the cluster would cost if our servers and worker
added nothing to the bare stack. Every service figure is net of an idle baseline of the
same processes, as in the scaling mode.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

# The send's check as the PostgreSQL adapter asks it: the floor follows it if it changes.
from chat_adapters.sql.send_checks import SEND_CHECK
from loadtests import phases, report
from loadtests.roles import GENERATOR, RoleMeter, Window, service_pids
from loadtests.scaling import QUICK_WORKLOAD, Accounts, ScalingSettings, connect_and_warm
from loadtests.targets import POSTGRES_ADMIN_DSN, Target, start_reference
from loadtests.workloads import DIRECT_CROSS, MIXED, Workload

REPO = Path(__file__).resolve().parents[1]
RABBITMQ_URL = os.environ.get("CHAT_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("CHAT_REDIS_URL", "redis://127.0.0.1:6379/0")
WORKLOADS = (MIXED, DIRECT_CROSS)
SERVICES = ("rabbitmq", "postgres", "redis")


def sample_body(n: int) -> bytes:
    """An AMQP body the size of ours: the JSON of one message, as the codec writes it."""
    return orjson.dumps(
        {
            "v": 1,
            "id": str(uuid.uuid4()),
            "room_id": str(uuid.uuid4()),
            "sender_id": str(uuid.uuid4()),
            "body": f"bench {n} t={time.time():.6f}",
            "created_at": datetime.now(UTC).isoformat(),
            "client_msg_id": f"floor-{n}",
            "seq": None,
            "edited_at": None,
            "deleted": False,
        }
    )


async def paced(rate: float, duration: float, one: Callable[[int], Awaitable[None]]) -> int:
    """Start ``one(n)`` at ``rate`` per second for ``duration`` seconds, whatever the
    answers (open loop, as the bench's generator); wait for them all; the count started."""
    tasks: set[asyncio.Task[None]] = set()
    t0 = time.perf_counter()
    n = 0
    while n / rate < duration:
        delay = t0 + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
    await asyncio.gather(*tasks)
    return n


async def metered(
    role: str,
    pids: Callable[[], list[int]],
    baseline: float,
    work: Callable[[], Awaitable[int]],
) -> dict[str, Any]:
    """CPU ms per operation of ``role``'s processes while ``work`` runs, net of an idle
    baseline of the same processes just before; ``client_ms_per_message``: this process's
    own CPU per operation over the same window (the bare clients' side of the work)."""
    meter = RoleMeter(lambda: {role: pids()})
    meter.start()
    await asyncio.sleep(baseline)
    idle = meter.stop()
    meter.start()
    count = await work()
    busy = meter.stop()
    client = _net(GENERATOR, idle, busy, count)["ms_per_message"]
    return {"count": count, **_net(role, idle, busy, count), "client_ms_per_message": client}


def _net(role: str, idle: Window, busy: Window, count: int) -> dict[str, float]:
    return {
        "ms_per_message": round(1000 * busy.net_seconds(role, idle) / max(count, 1), 3),
        "idle_percent": round(100 * idle.net_seconds(role, None) / idle.wall, 2),
        "busy_percent": round(100 * busy.net_seconds(role, None) / busy.wall, 2),
    }


async def pacing_floor(rate: float, duration: float, baseline: float) -> dict[str, Any]:
    """The pacing alone (a task per operation, doing nothing): this process's CPU for it is
    taken off each bare client's figure, which then counts only the client's own work."""

    async def nothing(n: int) -> None:
        return None

    return await metered("none", lambda: [], baseline, lambda: paced(rate, duration, nothing))


# -- the services, driven bare ----------------------------------------------------------------


async def rabbitmq_floor(
    rate: float, duration: float, baseline: float, kind: str
) -> dict[str, Any]:
    """Per message: one persistent publish with a confirm (mandatory, through a direct
    exchange) to a queue declared as ours are (``kind="quorum"``: quorum, single active
    consumer, delivery limit, at-least-once dead-lettering, reject-publish), delivered to a
    consumer on its own connection and acknowledged on its own. ``kind="classic"``: a
    durable classic queue with single active consumer, for comparison."""
    import aio_pika

    tag = secrets.token_hex(4)
    name, dead = f"floor-{tag}", f"floor-{tag}.dead"
    publisher = await aio_pika.connect(RABBITMQ_URL)
    consumer = await aio_pika.connect(RABBITMQ_URL)
    try:
        pch = await publisher.channel(publisher_confirms=True, on_return_raises=True)
        cch = await consumer.channel()
        await cch.set_qos(prefetch_count=32)
        arguments: dict[str, Any] = {"x-queue-type": kind, "x-single-active-consumer": True}
        if kind == "quorum":
            await cch.declare_exchange(dead, aio_pika.ExchangeType.FANOUT, durable=True)
            arguments |= {
                "x-delivery-limit": 5,
                "x-dead-letter-exchange": dead,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        exchange = await pch.declare_exchange(name, aio_pika.ExchangeType.DIRECT, durable=True)
        queue = await cch.declare_queue(name, durable=True, arguments=arguments)
        await queue.bind(name, routing_key="0")
        received = 0
        all_in = asyncio.Event()
        expected: list[int] = []

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if expected and received >= expected[0]:
                all_in.set()

        await queue.consume(on_message)

        async def publish(n: int) -> None:
            await exchange.publish(
                aio_pika.Message(
                    sample_body(n),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=str(uuid.uuid4()),
                    content_type="application/json",
                ),
                routing_key="0",
                mandatory=True,
            )

        async def work() -> int:
            sent = await paced(rate, duration, publish)
            expected.append(sent)
            if received < sent:
                await asyncio.wait_for(all_in.wait(), 30)
            return sent

        return await metered("rabbitmq", lambda: service_pids(None)["rabbitmq"], baseline, work)
    finally:
        await consumer.close()  # first: a queue deleted under its consumer cancels it
        with contextlib.suppress(Exception):
            cleanup = await publisher.channel()
            await cleanup.queue_delete(name)
            await cleanup.exchange_delete(name)
            if kind == "quorum":
                await cleanup.exchange_delete(dead)
        await publisher.close()


_SCHEMA = """
CREATE TABLE rooms (id text PRIMARY KEY, last_seq integer NOT NULL DEFAULT 0);
CREATE TABLE memberships (room_id text, user_id text, PRIMARY KEY (room_id, user_id));
CREATE TABLE messages (
    id text PRIMARY KEY, room_id text NOT NULL, seq integer NOT NULL, sender_id text NOT NULL,
    body text NOT NULL, client_msg_id text, created_at timestamptz NOT NULL,
    UNIQUE (room_id, seq)
);
"""
# The store of one message: the room's next seq and the row, one statement (autocommit:
# its own transaction, committed to the WAL before it answers, as the worker's is).
_STORE = """
WITH numbered AS (UPDATE rooms SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq)
INSERT INTO messages (id, room_id, seq, sender_id, body, client_msg_id, created_at)
SELECT $2, $1, numbered.last_seq, $3, $4, $5, now() FROM numbered
"""


async def postgres_floor(rate: float, duration: float, baseline: float) -> dict[str, Any]:
    """Per message: the send's membership check on one connection (a server's) and the
    numbered insert on another (the worker's), in a scratch database of 132 rooms."""
    import asyncpg

    database = f"chat_floor_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
        dsn = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0] + f"/{database}"
        server, worker = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
        try:
            await worker.execute(_SCHEMA)
            rooms = [str(uuid.uuid4()) for _ in range(132)]
            users = [str(uuid.uuid4()) for _ in range(8)]
            await worker.executemany("INSERT INTO rooms (id) VALUES ($1)", [(r,) for r in rooms])
            await worker.executemany(
                "INSERT INTO memberships VALUES ($1, $2)", [(r, u) for r in rooms for u in users]
            )

            async def one(n: int) -> None:
                room, user, message_id = (
                    rooms[n % len(rooms)],
                    users[n % len(users)],
                    str(uuid.uuid4()),
                )
                record = await server.fetchrow(SEND_CHECK, room, user, message_id)
                assert record is not None and record[0] and not record[1]
                await worker.execute(_STORE, room, message_id, user, f"bench {n}", f"floor-{n}")

            # A connection runs one statement at a time; at this rate a message's check
            # and store are done long before the next message comes.
            lane = asyncio.Lock()

            async def serialised(n: int) -> None:
                async with lane:
                    await one(n)

            return await metered(
                "postgres",
                lambda: service_pids(database)["postgres"],
                baseline,
                lambda: paced(rate, duration, serialised),
            )
        finally:
            await server.close()
            await worker.close()
    finally:
        with contextlib.suppress(Exception):
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


async def redis_floor(
    rate: float, duration: float, baseline: float, nodes: int = 2
) -> dict[str, Any]:
    """Per message: one PUBLISH to each of ``nodes`` node channels, sent in one round trip
    (the worker's script call does its lookups and publishes in one), each read by that
    node's subscriber."""
    import redis.asyncio as redis

    tag = secrets.token_hex(4)
    channels = [f"floor-{tag}-{i}" for i in range(nodes)]
    client = redis.Redis.from_url(REDIS_URL)
    subscribers = [redis.Redis.from_url(REDIS_URL) for _ in channels]
    pubsubs = [s.pubsub(ignore_subscribe_messages=True) for s in subscribers]
    read = [0] * nodes
    expected: list[int] = []
    all_in = asyncio.Event()

    async def listen(i: int) -> None:
        async for message in pubsubs[i].listen():
            if message["type"] == "message":
                read[i] += 1
                if expected and min(read) >= expected[0]:
                    all_in.set()

    try:
        for pubsub, channel in zip(pubsubs, channels, strict=True):
            await pubsub.subscribe(channel)
        listeners = [asyncio.create_task(listen(i)) for i in range(nodes)]

        async def publish(n: int) -> None:
            body = sample_body(n)
            async with client.pipeline(transaction=False) as pipe:
                for channel in channels:
                    pipe.publish(channel, body)
                await pipe.execute()

        async def work() -> int:
            sent = await paced(rate, duration, publish)
            expected.append(sent)
            if min(read) < sent:
                await asyncio.wait_for(all_in.wait(), 30)
            return sent

        try:
            return await metered("redis", lambda: service_pids(None)["redis"], baseline, work)
        finally:
            for task in listeners:
                task.cancel()
    finally:
        for pubsub in pubsubs:
            await pubsub.aclose()
        for connection in [client, *subscribers]:
            await connection.aclose()


# -- the reference, on the scaling mode's workloads -------------------------------------------


async def reference_rows(settings: ScalingSettings) -> dict[str, dict[str, Any]]:
    """The scaling mode's workloads at the settings' rate against the reference server: its
    CPU per message, net of its idle baseline, and whether every message reached every
    member."""
    target = await asyncio.to_thread(start_reference)
    try:
        accounts = await Accounts.set_up(target, settings.workload)
        return {
            name: await _reference_workload(accounts, target, name, settings) for name in WORKLOADS
        }
    finally:
        await asyncio.to_thread(target.stop)


async def _reference_workload(
    accounts: Accounts, target: Target, name: str, settings: ScalingSettings
) -> dict[str, Any]:
    progress = phases.Progress(f"reference {name}")
    population = accounts.population(name, target.urls, settings.workload.seed)
    row: dict[str, Any] = {}
    try:
        senders = await connect_and_warm(accounts, name, population, settings, progress)

        async def phase() -> int:
            with phases.generator_gc_paused():
                stats = await phases.open_loop(
                    population, settings.rate, settings.duration, progress, senders=senders
                )
                await phases.drain(population, settings.drain)
            row.update(phases.summarize(stats, settings.duration, population.tracker.lost()))
            return int(stats.accepted)

        row |= await metered("servers", target.pids, settings.baseline, phase)
        progress.done(f"{row['ms_per_message']} ms/msg")
        return row
    finally:
        await population.close()


# -- the cluster, before and after --------------------------------------------------------------


def cluster_rows(python: str, args: argparse.Namespace, label: str) -> dict[str, Any]:
    """The scaling mode's 2-node, 1-worker phases, run by ``python`` (whose venv's `chat` the
    bench starts) on this checkout's bench; its JSON rows by workload."""
    output = Path(args.workdir) / f"{label}-{secrets.token_hex(3)}.json"
    command = [
        python, "-m", "loadtests.bench", "--scaling", "--nodes", "2", "--workers", "1",
        "--worker-nodes", "2", "--rate", f"{args.rate:g}", "--duration", f"{args.duration:g}",
        "--drain", f"{args.drain:g}", "--baseline", f"{args.baseline:g}",
        "--warm-up", f"{args.warm_up:g}", "--output", str(output),
    ]  # fmt: skip
    if args.quick:
        command.append("--quick")
    print(f"floor: cluster ({label}) by {python}", file=sys.stderr)
    done = subprocess.run(command, cwd=REPO, stdout=subprocess.DEVNULL, timeout=1800)
    if not output.exists():
        raise RuntimeError(f"the {label} cluster run wrote no JSON (exit {done.returncode})")
    result = json.loads(output.read_text())
    return {row["workload"]: row for row in result["results"]}


# -- the run ------------------------------------------------------------------------------------


async def services_round(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    rate, duration, baseline = args.rate, args.duration, args.baseline
    found: dict[str, dict[str, Any]] = {}
    for name, run in (
        ("pacing", lambda: pacing_floor(rate, duration, baseline)),
        ("rabbitmq", lambda: rabbitmq_floor(rate, duration, baseline, "quorum")),
        ("rabbitmq classic", lambda: rabbitmq_floor(rate, duration, baseline, "classic")),
        ("postgres", lambda: postgres_floor(rate, duration, baseline)),
        ("redis", lambda: redis_floor(rate, duration, baseline)),
    ):
        print(f"floor: {name}", file=sys.stderr)
        found[name] = await run()
    return found


def one_round(args: argparse.Namespace, index: int, errors: list[dict[str, Any]]) -> dict[str, Any]:
    """Each part of a round in turn; a part that fails is left out of the round, its error
    listed, and the run goes on (a long run keeps what it measured)."""
    variants = [("after", sys.executable)]
    if args.before:
        variants.append(("before", args.before))
        if index % 2:  # alternate which goes first: A B, B A, ...
            variants.reverse()
    parts: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        (label, lambda python=python, label=label: cluster_rows(python, args, label))
        for label, python in variants
    ]
    parts += [
        ("reference", lambda: asyncio.run(reference_rows(_scaling_settings(args)))),
        ("services", lambda: asyncio.run(services_round(args))),
    ]
    measured: dict[str, Any] = {"round": index + 1, "probe_ms": report.cpu_probe_ms()}
    for part, run in parts:
        try:
            measured[part] = run()
        except Exception as exc:
            errors.append({"round": index + 1, "part": part, "error": repr(exc)})
            print(f"floor: round {index + 1}, {part} failed: {exc!r}", file=sys.stderr)
    return measured


def _scaling_settings(args: argparse.Namespace) -> ScalingSettings:
    """The scaling mode's settings for the reference's phases: the cluster's rate, phase,
    drain, baseline, warm-up and workload (one node; no churn)."""
    return ScalingSettings(
        nodes=(1,),
        workers=(1,),
        worker_nodes=1,
        rate=args.rate,
        duration=args.duration,
        drain=args.drain,
        baseline=args.baseline,
        churn=False,
        workload=QUICK_WORKLOAD if args.quick else Workload(),
        warm_up=args.warm_up,
    )


def _cluster_ms(row: Mapping[str, Any]) -> float:
    return float(row["ms_per_message"]["cluster"])


FLOOR_SERVICES = ("rabbitmq", "postgres", "redis")  # "rabbitmq classic" is shown beside


def _found(rounds: list[dict[str, Any]], value: Callable[[dict[str, Any]], float]) -> list[float]:
    """``value`` of each round that has it (a part that failed is missing from its round)."""
    found = []
    for measured in rounds:
        with contextlib.suppress(KeyError, TypeError):
            found.append(float(value(measured)))
    return found


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _clients(measured: dict[str, Any]) -> float:
    """The bare clients' own CPU per message, the pacing taken off each."""
    services = measured["services"]
    pacing = services["pacing"]["client_ms_per_message"]
    return sum(max(services[s]["client_ms_per_message"] - pacing, 0.0) for s in FLOOR_SERVICES)


def summary(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per workload, medians over the rounds: before, after, the reference, each service,
    the bare clients, and the floor (reference + services + clients); None for a figure
    no round has."""
    lines = []
    for name in WORKLOADS:
        parts = {
            s: _median(_found(rounds, lambda r, s=s: r["services"][s]["ms_per_message"]))
            for s in (*FLOOR_SERVICES, "rabbitmq classic")
        }
        parts["reference"] = _median(
            _found(rounds, lambda r, n=name: r["reference"][n]["ms_per_message"])
        )
        parts["clients"] = _median(_found(rounds, _clients))
        in_floor = [parts[p] for p in ("reference", *FLOOR_SERVICES, "clients")]
        floor = None if None in in_floor else round(sum(p or 0.0 for p in in_floor), 2)
        before = _found(rounds, lambda r, n=name: _cluster_ms(r["before"][n]))
        line: dict[str, Any] = {
            "workload": name,
            **parts,
            "floor": floor,
            "before": _median(before),
            "after": _median(_found(rounds, lambda r, n=name: _cluster_ms(r["after"][n]))),
        }
        if before:
            line["goal"] = round(0.6 * statistics.median(before), 2)
            # Each round's pair, where the round has both.
            line["after_vs_before"] = _found(
                rounds,
                lambda r, n=name: round(
                    _cluster_ms(r["after"][n]) / _cluster_ms(r["before"][n]), 2
                ),
            )
            if floor is not None:
                line["floor_vs_before"] = round(floor / statistics.median(before), 2)
        lines.append(line)
    return lines


COLUMNS = (
    ("workload", "workload"), ("reference", "reference"), ("rabbitmq", "rabbitmq"),
    ("postgres", "postgres"), ("redis", "redis"), ("clients", "clients"), ("floor", "floor"),
    ("before", "before"), ("goal", "goal"), ("after", "after"),
    ("after_vs_before", "after/before, each round"), ("floor_vs_before", "floor/before"),
    ("rabbitmq classic", "rabbitmq classic"),
)  # fmt: skip


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def render(lines: list[dict[str, Any]], settings: Mapping[str, Any]) -> str:
    head = [title for _, title in COLUMNS]
    rows = [[_cell(line.get(key)) for key, _ in COLUMNS] for line in lines]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    out = [
        f"settings: {dict(settings)}",
        "CPU ms per message, medians over the rounds. floor = reference (bare hypercorn +"
        " python-socketio) + rabbitmq + postgres + redis (each doing only what a message"
        " needs) + clients (the bare clients' own CPU for those operations); goal = 0.6 x"
        " before; rabbitmq classic: a classic queue instead of quorum, not in the floor",
        "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="msg/s of every phase")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--drain", type=float, default=5.0)
    parser.add_argument("--baseline", type=float, default=5.0, help="idle seconds before each")
    parser.add_argument("--warm-up", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="the scaling mode's small workload")
    parser.add_argument("--before", help="the Python of another checkout's venv, run as 'before'")
    parser.add_argument("--output", type=Path, help="JSON path (default var/bench/floor-<time>)")
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    output: Path = args.output or REPO / "var" / "bench" / f"floor-{started:%Y%m%d-%H%M%S}.json"
    args.workdir = str(output.parent)
    output.parent.mkdir(parents=True, exist_ok=True)
    settings = {
        k: getattr(args, k)
        for k in ("rate", "duration", "drain", "baseline", "warm_up", "rounds", "quick")
    } | {"before": args.before, "nodes": 2, "workers": 1}
    rounds: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    result: dict[str, Any] = {}
    try:
        for index in range(args.rounds):
            rounds.append(one_round(args, index, errors))
            # Written after every round: an interrupted run keeps what it measured.
            result = {
                "version": 1,
                "mode": "floor",
                "started_at": started.isoformat(timespec="seconds"),
                "machine": report.machine(),
                "settings": settings,
                "summary": summary(rounds),
                "rounds": rounds,
                "errors": errors,
            }
            report.write_json(result, output)
    except KeyboardInterrupt:
        errors.append({"error": "interrupted"})
    if result:
        print(render(result["summary"], settings))
        print(f"\nJSON: {output}")
    for error in errors:
        print(f"floor: error: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
