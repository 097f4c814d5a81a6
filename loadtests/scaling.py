"""The bench's scaling mode: CPU per message of each role of the cluster (servers, workers,
RabbitMQ, PostgreSQL, Redis, the generator) at one offered rate, for several counts of
server nodes and workers.

    python -m loadtests.bench --scaling --nodes 1,2,4,8 --workers 1,2,4 --rate 100

One cluster, one database: users and rooms are set up once; each configuration then starts
or stops server nodes and workers, places every user on a node at random (seeded), opens
the sockets and measures each workload (see ``loadtests.workloads``) in one open-loop phase
after an idle baseline of the same processes. Two lines of configurations: the node counts
with one worker, and the worker counts on ``--worker-nodes`` nodes. ``--churn`` adds a
phase at the end in which a worker is started a third of the way in and the oldest one
SIGKILLed at two thirds: nothing may be lost, duplicated or reordered meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from loadtests import phases
from loadtests.driver import Member, Population, Room, now
from loadtests.roles import DETAILED_ROLES, GENERATOR, Detail, RoleMeter, Window
from loadtests.targets import ScalableCluster, Target
from loadtests.workloads import (
    DIRECT_CROSS,
    MIXED,
    RoomPlan,
    Workload,
    cross_placement,
    message_plan,
    placement,
)

ROLES = ("servers", "workers", "rabbitmq", "postgres", "redis", GENERATOR)
# The cluster's own roles: what a deployment pays per message (the generator is the clients).
CLUSTER_ROLES = ROLES[:-1]
# A worker whose CPU share differs from the mean share by more than this is flagged: the
# work is not split evenly over the workers.
WORKER_SHARE_TOLERANCE = 0.25

QUICK_WORKLOAD = Workload(
    users=24, direct_rooms=8, groups=4, group_size=(3, 5), big_rooms=(12,), cross_pairs=8
)


@dataclass(frozen=True)
class ScalingSettings:
    nodes: tuple[int, ...]
    workers: tuple[int, ...]
    worker_nodes: int  # the node count of the workers line
    rate: float
    duration: float
    drain: float
    baseline: float  # seconds of idle measured before each phase, subtracted
    churn: bool
    workload: Workload
    profile: Path | None = None  # py-spy flame graphs of each phase go there
    # Seconds at the rate before each phase, not measured: new nodes' first requests, and
    # time for the worker group to measure the partitions' loads and balance them.
    warm_up: float = 1.0

    def configurations(self) -> list[tuple[int, int]]:
        """(nodes, workers) in the order they run: the nodes line with one worker, then the
        workers line on ``worker_nodes`` nodes; each configuration once."""
        chosen: list[tuple[int, int]] = []
        for config in [(n, 1) for n in self.nodes] + [(self.worker_nodes, w) for w in self.workers]:
            if config not in chosen:
                chosen.append(config)
        return chosen

    def workloads(self, nodes: int, workers: int) -> list[str]:
        """The nodes line measures both workloads (direct-cross is where node scaling shows);
        the workers line the mixed one only."""
        return [MIXED, DIRECT_CROSS] if workers == 1 else [MIXED]

    def phase_count(self) -> int:
        count = sum(len(self.workloads(*c)) for c in self.configurations())
        return count + (1 if self.churn else 0)

    def flat(self) -> dict[str, Any]:
        return {
            "nodes": list(self.nodes),
            "workers": list(self.workers),
            "worker_nodes": self.worker_nodes,
            "rate": self.rate,
            "phase_s": self.duration,
            "drain_s": self.drain,
            "baseline_s": self.baseline,
            "churn": self.churn,
            "workload": self.workload.describe(),
            "profile": None if self.profile is None else str(self.profile),
            "warm_up_s": self.warm_up,
        }


@dataclass
class Accounts:
    """Users registered once (token and id), and the rooms created once, for every
    configuration of the run."""

    members: list[Member]
    mixed: list[RoomPlan]
    cross: list[RoomPlan]
    room_ids: dict[int, str]  # index in mixed + cross -> room id

    @classmethod
    async def set_up(cls, cluster: Target, workload: Workload) -> Accounts:
        population = Population(cluster.urls)
        progress = phases.Progress("scaling set-up")
        try:
            progress.update(f"registering {workload.total_users} users", force=True)
            members = await population.add_users(workload.total_users)
            mixed, cross = workload.mixed_rooms(), workload.cross_rooms()
            progress.update(f"creating {len(mixed) + len(cross)} rooms", force=True)
            room_ids: dict[int, str] = {}
            for i, plan in enumerate([*mixed, *cross]):
                room = await population.add_room([members[m] for m in plan.members], 0, plan.kind)
                room_ids[i] = room.id
        finally:
            await population.close()
        return cls(members, mixed, cross, room_ids)

    def population(self, workload: str, urls: Sequence[str], seed: int) -> Population:
        """A population of the workload's users, each on its node of ``urls``, not connected."""
        nodes = len(urls)
        if workload == MIXED:
            plans, offset = self.mixed, 0
            nodes_of = dict(
                enumerate(placement(len(self.members) - 2 * len(self.cross), nodes, seed))
            )
        else:
            plans, offset = self.cross, len(self.mixed)
            nodes_of = cross_placement(self.cross, nodes, seed)
        users = sorted({m for plan in plans for m in plan.members})
        population = Population(urls)
        placed = {
            u: replace(
                self.members[u],
                rest_url=urls[nodes_of[u]],
                socket_url=urls[nodes_of[u]],
                socket=None,
            )
            for u in users
        }
        population.members = [placed[u] for u in users]
        population.rooms = [
            Room(self.room_ids[offset + i], [placed[m] for m in plan.members], [])
            for i, plan in enumerate(plans)
        ]
        return population

    def senders(
        self, workload: str, population: Population, shares: dict[str, float], seed: int
    ) -> Iterator[tuple[Member, Room]]:
        plans = self.mixed if workload == MIXED else self.cross
        by_user = {m.index: m for m in population.members}
        for index, user in message_plan(plans, shares, seed):
            yield by_user[user], population.rooms[index]


def _net_ms(
    window: Window, baseline: Window | None, accepted: int
) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """CPU per accepted message of each role in ms: raw, and net of the idle baseline's
    rate over the same wall time (other clients of the shared services, sockets' pings)."""
    raw: dict[str, float | None] = {}
    net: dict[str, float | None] = {}
    for role in ROLES:
        if not accepted:
            raw[role] = net[role] = None
            continue
        raw[role] = round(window.net_seconds(role, None) / accepted * 1000, 3)
        net[role] = round(window.net_seconds(role, baseline) / accepted * 1000, 3)
    for values in (raw, net):
        cluster = [values[r] for r in CLUSTER_ROLES]
        values["cluster"] = None if None in cluster else round(sum(c or 0.0 for c in cluster), 3)
    return raw, net


def _net_detail(
    window: Window, baseline: Window | None, accepted: int
) -> dict[str, dict[str, float] | None]:
    """For our own roles, each ``Detail`` figure per accepted message, net of the idle
    baseline's rate over the same wall time: user, system and run (the scheduler's exact
    clock) in ms, sleeps and preemptions in counts."""
    per: dict[str, dict[str, float] | None] = {}
    for role in DETAILED_ROLES:
        if not accepted or not window.detail.get(role):
            per[role] = None
            continue
        used = window.role_detail(role)
        idle = baseline.role_detail(role) if baseline is not None else Detail()
        scale = window.wall / baseline.wall if baseline is not None else 0.0

        net = {
            name: max(getattr(used, name) - getattr(idle, name) * scale, 0.0) / accepted
            for name in ("user", "system", "run", "sleeps", "preempted")
        }
        per[role] = {
            "user_ms": round(net["user"] * 1000, 3),
            "system_ms": round(net["system"] * 1000, 3),
            "run_ms": round(net["run"] * 1000, 3),
            "sleeps": round(net["sleeps"], 3),
            "preempted": round(net["preempted"], 3),
        }
    return per


def _idle_detail(baseline: Window | None) -> dict[str, dict[str, float] | None]:
    """Each detailed role's idle rate in the baseline, per process: run in % of a core
    (exact clock), sleeps per second."""
    per: dict[str, dict[str, float] | None] = {}
    for role in DETAILED_ROLES:
        processes = len(baseline.detail.get(role, {})) if baseline is not None else 0
        if baseline is None or not processes:
            per[role] = None
            continue
        idle = baseline.role_detail(role)
        per[role] = {
            "run_percent_per_process": round(idle.run / baseline.wall / processes * 100, 3),
            "sleeps_per_s_per_process": round(idle.sleeps / baseline.wall / processes, 1),
        }
    return per


def worker_shares(
    window: Window, names: dict[int, str], churn: bool, stored: dict[int, int] | None = None
) -> dict[str, Any]:
    """Each worker's CPU and share of the workers' CPU, and of the messages stored when
    ``stored`` (pid -> messages stored over the phase) is known; ``uneven`` when one CPU
    share differs from the mean share by more than 25% (not judged in a churn phase: its
    workers changed). ``workers_spread`` = (largest - smallest) / largest CPU share."""
    cpu = window.cpu.get("workers", {})
    total = sum(cpu.values())
    counted = sum((stored or {}).values())
    detail: list[dict[str, Any]] = [
        {
            "name": names.get(pid, str(pid)),
            "pid": pid,
            "cpu_percent": round(seconds / window.wall * 100, 2),
            "share": round(seconds / total, 3) if total > 0 else None,
            # From the worker's /metrics (chat_messages_stored_total), over the phase.
            "messages_stored": None if stored is None else stored.get(pid),
            "message_share": (
                round(stored.get(pid, 0) / counted, 3) if stored is not None and counted else None
            ),
        }
        for pid, seconds in sorted(cpu.items(), key=lambda item: names.get(item[0], ""))
    ]
    uneven = spread = None
    if not churn and len(detail) > 1 and total > 0:
        mean = 1 / len(detail)
        shares = [d["share"] or 0.0 for d in detail]
        uneven = any(abs(share - mean) > WORKER_SHARE_TOLERANCE * mean for share in shares)
        spread = round((max(shares) - min(shares)) / max(shares), 3)
    return {"workers_detail": detail, "workers_uneven": uneven, "workers_spread": spread}


def stored_by_worker(cluster: ScalableCluster) -> dict[int, int]:
    """Each live worker's ``chat_messages_stored_total``, read from its /metrics (its
    ``CHAT_WORKER_OPS_PORT``); a worker that does not answer is left out."""
    counts: dict[int, int] = {}
    for worker in cluster.workers:
        port = worker.env.get("CHAT_WORKER_OPS_PORT")
        if worker.proc is None or port is None:
            continue
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
                text = answer.read().decode()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("chat_messages_stored_total "):
                counts[worker.proc.pid] = int(float(line.split()[1]))
    return counts


def _stored(before: dict[int, int], after: dict[int, int]) -> dict[int, int] | None:
    """Messages each worker stored over the phase; None unless every worker answered both
    times (a worker started or killed mid-phase has no count)."""
    if not after or set(before) != set(after):
        return None
    return {pid: after[pid] - before[pid] for pid in after}


async def _sampling(meter: RoleMeter) -> None:
    """Sample every second, so that a process gone mid-phase counts up to its end."""
    while True:
        await asyncio.sleep(1.0)
        await asyncio.to_thread(meter.sample)


async def _churn(cluster: ScalableCluster, meter: RoleMeter, duration: float) -> None:
    await asyncio.sleep(duration / 3)
    await asyncio.to_thread(cluster.add_worker)
    await asyncio.sleep(duration / 3)
    await asyncio.to_thread(meter.sample)
    await asyncio.to_thread(cluster.kill_worker)


def py_spy() -> str | None:
    """The py-spy beside this Python (the load extra installs it), else one on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


async def _profile(
    cluster: ScalableCluster, directory: Path, label: str, duration: float
) -> list[str]:
    """Flame graphs of the first server node and of every worker over the phase: py-spy
    samples from outside (``--nonblocking``: the process is never paused), at 50 Hz so
    that the sampler itself takes little of the cores. Its own CPU is in no role."""
    spy = py_spy()
    if spy is None:
        print("bench: --profile needs py-spy (pip install py-spy)", file=sys.stderr)
        return []
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    chosen = [*cluster.servers[:1], *cluster.workers]
    runs = []
    for process in chosen:
        assert process.proc is not None
        path = directory / f"{label}-{process.name}.svg"
        args = [spy, "record", "--nonblocking", "--rate", "50", "--duration"]
        args += [str(max(int(duration), 1)), "--format", "flamegraph", "--output", str(path)]
        args += ["--pid", str(process.proc.pid)]
        runs.append((path, await asyncio.create_subprocess_exec(
            *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )))  # fmt: skip
    written = []
    for path, run in runs:
        _, err = await run.communicate()
        if run.returncode == 0:
            written.append(str(path))
        else:
            print(f"bench: py-spy on {path.stem}: {err.decode()[-300:]}", file=sys.stderr)
    return written


async def connect_and_warm(
    accounts: Accounts,
    workload: str,
    population: Population,
    settings: ScalingSettings,
    progress: phases.Progress,
) -> Iterator[tuple[Member, Room]]:
    """Open the population's sockets and send at the rate for ``settings.warm_up`` seconds,
    not measured (new nodes' first requests, caches, pools; the worker group's loads, whose
    load-balanced split settles within a few readings); the senders, to go on with."""
    progress.update(f"connecting {len(population.members)} sockets", force=True)
    await population.connect_all()
    shape = settings.workload
    shares = shape.shares() if workload == MIXED else {"direct": 1.0}
    senders = accounts.senders(workload, population, shares, shape.seed)
    await phases.open_loop(population, settings.rate, settings.warm_up, progress, senders=senders)
    await phases.drain(population, settings.drain)
    return senders


async def measure(
    cluster: ScalableCluster,
    accounts: Accounts,
    workload: str,
    settings: ScalingSettings,
    plan: phases.RunPlan,
    churn: bool = False,
) -> dict[str, Any]:
    """One workload on the cluster as it is now: sockets, warm-up, baseline, phase."""
    nodes, workers = len(cluster.servers), len(cluster.workers)
    seed = settings.workload.seed
    label = f"{nodes} nodes {workers} workers {workload}{' churn' if churn else ''}"
    progress = phases.Progress(f"{plan.next()} {label}")
    population = accounts.population(workload, cluster.urls, seed)
    meter = RoleMeter(cluster.role_pids)
    try:
        senders = await connect_and_warm(accounts, workload, population, settings, progress)
        baseline = None
        if settings.baseline > 0:
            progress.update(f"idle baseline {settings.baseline:g} s", force=True)
            meter.start()
            await asyncio.sleep(settings.baseline)
            baseline = meter.stop()
        stored_before = await asyncio.to_thread(stored_by_worker, cluster)
        with phases.generator_gc_paused():
            host = phases.HostCpu.read()
            meter.start()
            sampling = asyncio.create_task(_sampling(meter))
            changing = (
                asyncio.create_task(_churn(cluster, meter, settings.duration)) if churn else None
            )
            profiling = None
            if settings.profile is not None:
                name = f"{nodes}n{workers}w-{workload}{'-churn' if churn else ''}"
                profiling = asyncio.create_task(
                    _profile(cluster, settings.profile, name, settings.duration)
                )
            t0 = now()
            stats = await phases.open_loop(
                population, settings.rate, settings.duration, progress, senders=senders
            )
            duration = now() - t0
            if changing is not None:
                await changing
            profiles = [] if profiling is None else await profiling
            await phases.drain(population, settings.drain)
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
            window = meter.stop()
            busy = phases.host_percents(host, phases.HostCpu.read())
        stored_after = await asyncio.to_thread(stored_by_worker, cluster)
    finally:
        await population.close()
    summary = phases.summarize(stats, duration, population.tracker.lost())
    raw, net = _net_ms(window, baseline, stats.accepted)
    row: dict[str, Any] = {
        "nodes": nodes,
        "workers": workers,
        "workload": workload,
        "churn": churn,
        "offered_rate": settings.rate,
        "users": len(population.members),
        "rooms": len(population.rooms),
        "cross_node": workload == DIRECT_CROSS and nodes > 1,
        **summary,
        "window_s": round(window.wall, 2),
        "processes": {role: len(window.cpu.get(role, {})) for role in ROLES},
        "cpu_percent": window.role_percent(),
        "baseline_percent": baseline.role_percent() if baseline is not None else None,
        "ms_per_message": net,
        "ms_per_message_raw": raw,
        # Our processes in detail (see loadtests.roles.Detail), per message, net of idle.
        "detail_per_message": _net_detail(window, baseline, stats.accepted),
        "baseline_detail": _idle_detail(baseline),
        **worker_shares(window, cluster.names, churn, _stored(stored_before, stored_after)),
        "profiles": profiles,
        **busy,
    }
    progress.done(
        f"{row['accepted_per_s']:.0f} msg/s, server {net['servers']} ms/msg, cluster "
        f"{net['cluster']} ms/msg, lost {row['lost']}, dup {row['duplicated']}, "
        f"order {row['order_violations']}"
    )
    return row


async def run(settings: ScalingSettings, rows: list[dict[str, Any]], errors: list[Any]) -> None:
    """Every configuration and workload, rows appended as phases finish."""
    plan = phases.RunPlan(settings.phase_count())
    configurations = settings.configurations()
    first_nodes, first_workers = configurations[0]
    cluster = await asyncio.to_thread(ScalableCluster.start, first_nodes, first_workers)
    try:
        accounts = await Accounts.set_up(cluster, settings.workload)
        for nodes, workers in configurations:
            await asyncio.to_thread(cluster.scale, nodes, workers)
            for workload in settings.workloads(nodes, workers):
                try:
                    rows.append(await measure(cluster, accounts, workload, settings, plan))
                except Exception as exc:
                    errors.append({"nodes": nodes, "workers": workers, "error": repr(exc)})
        if settings.churn:
            try:
                rows.append(await measure(cluster, accounts, MIXED, settings, plan, churn=True))
            except Exception as exc:
                errors.append({"churn": True, "error": repr(exc)})
    finally:
        await asyncio.to_thread(cluster.stop)
