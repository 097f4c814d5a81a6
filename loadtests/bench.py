"""The repeatable benchmark: fixed scenarios on the targets the bench starts itself.

    python -m loadtests.bench                 # every scenario on embedded + reference
    python -m loadtests.bench --quick         # a short smoke run
    python -m loadtests.bench --all           # + the cluster target, under 10 minutes
    python -m loadtests.bench --scenarios small-rooms --targets embedded,reference
    python -m loadtests.bench --scaling --nodes 1,2,4,8 --workers 1,2,4 --rate 100

Scenarios: ``small-rooms`` (10 rooms of 10 members, 2 senders each), ``big-room`` (1 room
of 200 members), each at fixed open-loop rates then a closed-loop saturation run;
``idle`` (N connected sockets doing nothing: the server's RSS per connection, then a
broadcast to all of them). Targets: ``embedded`` (`chat serve`, no configuration),
``cluster`` (2 servers + 1 worker on RabbitMQ/Redis/PostgreSQL; ``cluster-1`` has one server,
to see how a second node scales, and runs beside it phase by phase), ``reference`` (bare
python-socketio, see reference_server.py). Writes var/bench/bench-<time>.json and .png.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtests import phases, report, scaling, scaling_report
from loadtests.driver import Member, Population, Room, now
from loadtests.scaling import QUICK_WORKLOAD, ScalingSettings
from loadtests.targets import REPO, STARTERS, Target
from loadtests.workloads import Workload


@dataclass(frozen=True)
class Scenario:
    """A population of rooms and the loads to offer it."""

    name: str
    rooms: int
    members: int
    senders: int
    rates: tuple[float, ...]
    closed_loop: bool = True
    # Messages each sender keeps in flight in the closed loop. With 1, the cluster's pipeline
    # (server, RabbitMQ, worker, PostgreSQL, Redis, server) was bound by its latency, not its
    # CPU: 20 in flight / ~140 ms = ~140 msg/s, where 4 each reached 160-174 on the same
    # machine. Saturation needs enough in flight for the slowest target; 4 is enough for all.
    window: int = 4


@dataclass(frozen=True)
class Idle:
    """N idle sockets, at most ``per_user`` per user (the server caps sockets per user)."""

    name: str
    sockets: int
    per_user: int = 25
    broadcasts: int = 5

    @property
    def users(self) -> int:
        return -(-self.sockets // self.per_user)


@dataclass(frozen=True)
class Settings:
    duration: float
    drain: float
    small_rooms: Scenario
    big_room: Scenario
    idle: Idle

    def rooms(self, name: str) -> Scenario:
        """The room scenario called ``name`` ("small-rooms" or "big-room")."""
        return self.small_rooms if name == "small-rooms" else self.big_room

    def flat(self) -> dict[str, Any]:
        s, b, i = self.small_rooms, self.big_room, self.idle
        return {
            "phase_s": self.duration,
            "drain_s": self.drain,
            "small-rooms": f"{s.rooms}x{s.members} senders {s.senders}/room rates "
            f"{list(s.rates)} closed window {s.window}",
            "big-room": f"{b.rooms}x{b.members} senders {b.senders} rates {list(b.rates)} "
            f"closed window {b.window}",
            "idle": f"{i.sockets} sockets of {i.users} users",
        }


STANDARD = Settings(
    duration=10.0,
    drain=10.0,
    small_rooms=Scenario("small-rooms", rooms=10, members=10, senders=2, rates=(10, 50, 100, 200)),
    big_room=Scenario("big-room", rooms=1, members=200, senders=4, rates=(5, 10, 20)),
    idle=Idle("idle", sockets=5000),
)
QUICK = Settings(
    duration=3.0,
    drain=5.0,
    small_rooms=Scenario("small-rooms", rooms=3, members=4, senders=2, rates=(20,)),
    big_room=Scenario("big-room", rooms=1, members=30, senders=2, rates=(5,)),
    idle=Idle("idle", sockets=60, per_user=10, broadcasts=3),
)
SCENARIOS = ("small-rooms", "big-room", "idle")


@dataclass(frozen=True)
class Run:
    """Scenarios on one target; ``top_rates``: only that many of the highest open-loop rates.

    ``beside``: another target measured phase by phase alongside this one, both running,
    in the room scenarios they share (see ``run_rooms``)."""

    target: str
    scenarios: tuple[str, ...]
    top_rates: int | None = None
    beside: Run | None = None

    def settings(self, settings: Settings) -> Settings:
        if self.top_rates is None:
            return settings
        small, big = settings.small_rooms, settings.big_room
        return replace(
            settings,
            small_rooms=replace(small, rates=small.rates[-self.top_rates :]),
            big_room=replace(big, rates=big.rates[-self.top_rates :]),
        )

    def runs(self) -> tuple[Run, ...]:
        """This run and the one beside it: every target it starts."""
        return (self,) if self.beside is None else (self.beside, self)


# --all: every scenario on each target, and small-rooms on a one-server cluster beside the
# two-server one, to show how a second node scales: at its two highest rates and the closed
# loop (at the lower rates both keep up, 10 s each of nothing to compare).
ONE_NODE = Run("cluster-1", ("small-rooms",), top_rates=2)
ALL = (
    Run("embedded", SCENARIOS),
    Run("cluster", SCENARIOS, beside=ONE_NODE),
    Run("reference", SCENARIOS),
)


def _meter(target: Target) -> phases.Meter:
    return phases.Meter(server_cpu=target.cpu_seconds, server_rss_kib=target.rss_kib)


def saturated(row: dict[str, Any]) -> bool:
    """An open-loop phase the target could not keep up with: higher rates would only pile up
    a backlog that spills into the next phases (and past the time budget)."""
    p50 = row["latency_ms"]["p50"]
    return bool(
        row["accepted_per_s"] < 0.9 * row["offered_rate"]
        or row["lost"]
        or (p50 is not None and p50 > 1000)
    )


async def close_population(population: Population, target: Target, stop_first: bool) -> None:
    """Close a scenario's sockets; after the target's last scenario, stop the target first:
    closing 5,000 idle sockets kept a server busy with their disconnects for seconds (the
    reference's python-socketio scans every room at each) before it could even exit."""
    if stop_first:
        await asyncio.to_thread(target.stop)
    await population.close()


@dataclass
class RoomPhases:
    """One target with its population of rooms, set up and warm, ready for measured phases."""

    target: Target
    scenario: Scenario
    settings: Settings
    population: Population
    skip_open: bool = False  # saturated: higher open-loop rates would only pile up a backlog

    @classmethod
    async def set_up(cls, target: Target, scenario: Scenario, settings: Settings) -> RoomPhases:
        population = Population(target.urls)
        progress = phases.Progress(f"{target.name} {scenario.name}")
        try:
            progress.update("setting up: users, rooms, sockets", force=True)
            members = await population.add_users(scenario.rooms * scenario.members)
            for r in range(scenario.rooms):
                group = members[r * scenario.members : (r + 1) * scenario.members]
                await population.add_room(group, scenario.senders)
            await population.connect_all()
            # Warm-up, not measured: first-request costs (imports, caches, SQLite pages).
            await phases.closed_loop(population, 1.0, progress)
            await phases.drain(population, settings.drain)
        except BaseException:
            await population.close()
            raise
        return cls(target, scenario, settings, population)

    @property
    def loads(self) -> list[float | None]:
        """Open-loop rates in rising order, then ``None``: the closed loop."""
        return [*self.scenario.rates, *([None] if self.scenario.closed_loop else [])]

    async def measure(self, rate: float | None, plan: phases.RunPlan) -> dict[str, Any] | None:
        """One measured phase and its row; ``None`` for a rate skipped as past saturation."""
        if rate is not None and self.skip_open:
            return None
        population, settings = self.population, self.settings
        load = "closed" if rate is None else f"{rate:g}/s"
        progress = phases.Progress(f"{plan.next()} {self.target.name} {self.scenario.name} {load}")
        meter = _meter(self.target)
        with phases.generator_gc_paused():
            started = meter.start()
            t0 = now()
            if rate is None:
                stats = await phases.closed_loop(
                    population, settings.duration, progress, window=self.scenario.window
                )
            else:
                stats = await phases.open_loop(population, rate, settings.duration, progress)
            duration = now() - t0
            await phases.drain(population, settings.drain)
            usage = meter.stop(started)
        row = {
            "target": self.target.name,
            "scenario": self.scenario.name,
            "load": load,
            "mode": "closed" if rate is None else "open",
            "offered_rate": rate,
            "population": asdict(self.scenario),
            **phases.summarize(stats, duration, population.tracker.lost()),
            **usage,
        }
        if rate is not None and saturated(row):
            self.skip_open = True
            row["saturated"] = True
            plan.skip(sum(1 for r in self.loads if r is not None and r > rate))
        lat = row["latency_ms"]
        progress.done(
            f"{row['accepted_per_s']:.0f} msg/s, {row['deliveries_per_s']:.0f} deliveries/s, "
            f"p50 {lat['p50']} p99 {lat['p99']} ms, lost {row['lost']}, "
            f"dup {row['duplicated']}, order {row['order_violations']}"
        )
        return row


async def run_rooms(
    target: Target,
    scenario: Scenario,
    settings: Settings,
    rows: list[dict[str, Any]],
    plan: phases.RunPlan,
    stop_first: bool = False,
    beside: RoomPhases | None = None,
) -> None:
    """Every load of ``scenario`` on ``target``, rows appended as phases finish.

    With ``beside`` (another target, set up and idle meanwhile), each load both have is
    measured on both in adjacent phases, the first of the pair alternating, the closed loop
    twice each: this machine's speed drifts by up to 1.6x over a run, so phases minutes
    apart compare the machine, not the targets. The idle one costs the other ~1% of a core
    (its sockets' pings).
    """
    bench = await RoomPhases.set_up(target, scenario, settings)
    pairs = 0
    try:
        for rate in bench.loads:
            order = [bench]
            if beside is not None and rate in beside.loads:
                order = [beside, bench] if pairs % 2 == 0 else [bench, beside]
                pairs += 1
                if rate is None:
                    # The closed loop, where the two are compared, twice in mirrored order
                    # (A B B A): a drift over the four phases weighs on both alike, and the
                    # mean of two pairs less on one noisy phase (a single pair read 0.81x
                    # and 1.15x for a second node in two runs an hour apart).
                    order += order[::-1]
            for phase in order:
                row = await phase.measure(rate, plan)
                if row is not None:
                    rows.append(row)
    finally:
        await close_population(bench.population, target, stop_first)


async def run_idle(
    target: Target, idle: Idle, settings: Settings, plan: phases.RunPlan, stop_first: bool = False
) -> list[dict[str, Any]]:
    population = Population(target.urls)
    progress = phases.Progress(f"{plan.next()} {target.name} idle {idle.sockets}")
    try:
        progress.update("setting up users", force=True)
        members = await population.add_users(idle.users)
        gc.collect()
        rss_before = target.rss_kib()
        t0 = now()
        # No shared room yet: the connects measure a bare socket, not a presence storm
        # (each connect would tell every socket of every fellow member).
        owners: list[Member] = []
        failures: list[str] = []
        for start in range(0, idle.sockets, 50):
            batch = [members[i % idle.users] for i in range(start, min(start + 50, idle.sockets))]
            opened = await asyncio.gather(
                *(population.open_socket(m, index=len(owners) + i) for i, m in enumerate(batch)),
                return_exceptions=True,
            )
            for member, result in zip(batch, opened, strict=True):
                if isinstance(result, BaseException):
                    failures.append(repr(result))
                else:
                    owners.append(member)
            progress.update(f"connected {len(owners)}/{idle.sockets}, failed {len(failures)}")
        connect_time = now() - t0
        # Let the server finish whatever each connect started before reading its memory.
        await asyncio.sleep(1.0)
        rss_after = target.rss_kib()
        # Then prove the sockets are live: join the users to one room (sockets already
        # connected must start getting its events) and broadcast to every socket.
        room = await population.add_room(members, senders=1)
        fanout_room = Room(room.id, owners, room.senders)
        with phases.generator_gc_paused():
            stats = population.tracker.new_phase()
            for _ in range(idle.broadcasts):
                await population.send(members[0], fanout_room, now(), wait=True)
            await phases.drain(population, settings.drain)
        summary = phases.summarize(stats, now() - stats.started_at, population.tracker.lost())
        connected = max(len(owners), 1)
        row = {
            "target": target.name,
            "scenario": "idle",
            "load": f"{idle.sockets} sockets",
            "mode": "idle",
            "offered_rate": None,
            "sockets": len(owners),
            "connect_failures": len(failures),
            "connect_errors": sorted(set(failures))[:5],
            "users": idle.users,
            "connects_per_s": round(len(owners) / connect_time, 1),
            "rss_before_kib": rss_before,
            "rss_after_kib": rss_after,
            "rss_per_connection_kib": round((rss_after - rss_before) / connected, 2),
            **summary,
            "server_cpu_percent": None,
            "generator_cpu_percent": None,
            "host_busy_percent": None,
            "host_steal_percent": None,
            "server_rss_kib": rss_after,
        }
        progress.done(
            f"{row['rss_per_connection_kib']} KiB/connection, broadcast p50 "
            f"{row['latency_ms']['p50']} ms, lost {row['lost']}"
        )
        return [row]
    finally:
        await close_population(population, target, stop_first)


@dataclass
class Started:
    """A run whose target is up: the run, its target and the settings it measures with."""

    run: Run
    target: Target
    settings: Settings


def _failed(errors: list[dict[str, str]], target: Target, scenario: str, exc: Exception) -> None:
    errors.append({"target": target.name, "scenario": scenario, "error": repr(exc)})
    print(f"\nbench: {target.name} {scenario} failed: {exc!r}", file=sys.stderr)


async def run_target(
    main: Started,
    rows: list[dict[str, Any]],
    errors: list[dict[str, str]],
    plan: phases.RunPlan,
    beside: Started | None = None,
) -> None:
    """Every scenario on one target, appending to ``rows`` as phases finish (an interrupted
    run still reports what it measured). The target ``beside`` it runs the scenarios both
    have, each just before (idle) or phase by phase alongside (rooms), and is stopped after
    its last one."""
    target, scenarios, settings = main.target, main.run.scenarios, main.settings
    shared = [] if beside is None else [s for s in scenarios if s in beside.run.scenarios]
    for n, name in enumerate(scenarios):
        last = n == len(scenarios) - 1
        companion: RoomPhases | None = None
        beside_last = bool(shared) and name == shared[-1]
        if beside is not None and name in shared:
            try:
                if name == "idle":
                    rows += await run_idle(
                        beside.target, beside.settings.idle, beside.settings, plan, beside_last
                    )
                else:
                    companion = await RoomPhases.set_up(
                        beside.target, beside.settings.rooms(name), beside.settings
                    )
            except Exception as exc:
                _failed(errors, beside.target, name, exc)
                if name != "idle":  # keep the progress count true: its phases will not
                    # run, nor the second closed loop this target would have run beside it
                    repeat = 1 if settings.rooms(name).closed_loop else 0
                    plan.skip(phase_count(beside.settings, name, beside=True) + repeat)
        try:
            if name == "idle":
                rows += await run_idle(target, settings.idle, settings, plan, stop_first=last)
            else:
                await run_rooms(target, settings.rooms(name), settings, rows, plan, last, companion)
        except Exception as exc:
            _failed(errors, target, name, exc)
        finally:
            if companion is not None:
                await close_population(companion.population, companion.target, beside_last)


async def _interruptible(coro: Any) -> Any:
    """Ctrl-C cancels the run through the loop itself: a KeyboardInterrupt raised inside
    a uvloop callback can be swallowed by a library and the bench would go on."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, task.cancel)
    try:
        return await coro
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - no uvloop on Windows
        return asyncio.run(_interruptible(coro))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_interruptible(coro))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma list")
    parser.add_argument("--targets", default="embedded,reference", help="comma list")
    profile = parser.add_mutually_exclusive_group()
    profile.add_argument("--quick", action="store_true", help="tiny populations, 3 s phases")
    profile.add_argument("--all", action="store_true", help="every scenario on every target")
    parser.add_argument("--duration", type=float, help="seconds per measured phase")
    parser.add_argument("--drain", type=float, help="seconds to wait for late deliveries")
    parser.add_argument("--rates", help="comma list of msg/s for both room scenarios")
    parser.add_argument("--idle-sockets", type=int, help="sockets of the idle scenario")
    parser.add_argument("--output", type=Path, help="JSON path (default var/bench/bench-<time>)")
    scaling = parser.add_argument_group(
        "scaling mode", "CPU per message of each role for several node and worker counts"
    )
    scaling.add_argument("--scaling", action="store_true", help="run the scaling mode")
    scaling.add_argument("--nodes", default="1,2,4,8", help="server node counts (1 worker)")
    scaling.add_argument("--workers", default="1,2,4", help="worker counts (--worker-nodes)")
    scaling.add_argument("--worker-nodes", type=int, default=2, help="nodes of the workers line")
    scaling.add_argument("--rate", type=float, default=100.0, help="offered msg/s of each phase")
    scaling.add_argument("--baseline", type=float, default=3.0, help="idle seconds before each")
    scaling.add_argument(
        "--warm-up", type=float, default=1.0, help="seconds at the rate before each (not measured)"
    )
    scaling.add_argument("--seed", type=int, default=22, help="users' nodes, rooms, senders")
    scaling.add_argument(
        "--churn", action="store_true", help="a last phase: a worker added, then one SIGKILLed"
    )
    scaling.add_argument(
        "--profile", type=Path, help="directory for py-spy flame graphs of each phase"
    )
    args = parser.parse_args(argv)
    if args.scaling:
        if args.all:
            parser.error("--scaling and --all are separate runs")
        for option in ("nodes", "workers"):
            try:
                counts = tuple(int(n) for n in getattr(args, option).split(",") if n.strip())
            except ValueError:
                parser.error(f"--{option}: a comma list of whole numbers")
            if not counts or min(counts) < 1:
                parser.error(f"--{option}: at least one count, each 1 or more")
            setattr(args, option, counts)
        return args
    if args.all:
        targets = [one.target for run in ALL for one in run.runs()]
        args.scenarios, args.targets = ",".join(SCENARIOS), ",".join(targets)
    for option, known in (("scenarios", SCENARIOS), ("targets", tuple(STARTERS))):
        chosen = [x.strip() for x in getattr(args, option).split(",") if x.strip()]
        unknown = set(chosen) - set(known)
        if unknown:
            parser.error(f"unknown {option}: {', '.join(sorted(unknown))}")
        setattr(args, option, chosen)
    return args


def plan_runs(targets: Sequence[str], scenarios: tuple[str, ...]) -> list[Run]:
    """The runs for ``--targets``: in their order, cluster-1 beside cluster when both are
    asked for, so that the scaling comparison is made in adjacent phases."""
    runs = [Run(t, scenarios) for t in targets]
    by_name = {run.target: run for run in runs}
    if "cluster" in by_name and "cluster-1" in by_name:
        paired = replace(by_name["cluster"], beside=by_name["cluster-1"])
        runs = [paired if r.target == "cluster" else r for r in runs if r.target != "cluster-1"]
    return runs


def phase_count(settings: Settings, scenario: str, beside: bool = False) -> int:
    """Measured phases of one scenario on one target (if none is skipped); ``beside``: the
    target is compared with another in that scenario, its closed loop measured twice."""
    if scenario == "idle":
        return 1
    chosen = settings.rooms(scenario)
    closed = (2 if beside else 1) if chosen.closed_loop else 0
    return len(chosen.rates) + closed


def planned_phases(run: Run, settings: Settings) -> int:
    """Measured phases of a run and of the target beside it (if none is skipped)."""
    shared = set() if run.beside is None else set(run.scenarios) & set(run.beside.scenarios)
    return sum(
        phase_count(one.settings(settings), s, beside=s in shared)
        for one in run.runs()
        for s in one.scenarios
    )


def settings_from(args: argparse.Namespace) -> Settings:
    settings = QUICK if args.quick else STANDARD
    if args.duration:
        settings = replace(settings, duration=args.duration)
    if args.drain:
        settings = replace(settings, drain=args.drain)
    if args.rates:
        rates = tuple(float(r) for r in args.rates.split(","))
        settings = replace(
            settings,
            small_rooms=replace(settings.small_rooms, rates=rates),
            big_room=replace(settings.big_room, rates=rates),
        )
    if args.idle_sockets:
        settings = replace(settings, idle=replace(settings.idle, sockets=args.idle_sockets))
    return settings


def scaling_settings(args: argparse.Namespace) -> ScalingSettings:
    quick = bool(args.quick)
    workload = QUICK_WORKLOAD if quick else Workload()
    return ScalingSettings(
        nodes=args.nodes,
        workers=args.workers,
        worker_nodes=args.worker_nodes,
        rate=args.rate,
        duration=args.duration or (3.0 if quick else 15.0),
        drain=args.drain or (5.0 if quick else 10.0),
        baseline=args.baseline,
        churn=args.churn,
        workload=replace(workload, seed=args.seed),
        profile=args.profile,
        warm_up=args.warm_up,
    )


def scaling_main(args: argparse.Namespace) -> int:
    """The scaling mode: see loadtests/scaling.py."""
    settings = scaling_settings(args)
    started_at = datetime.now(UTC)
    stamp = started_at.strftime("%Y%m%d-%H%M%S")
    output: Path = args.output or REPO / "var" / "bench" / f"scaling-{stamp}.json"
    rows: list[dict[str, Any]] = []
    errors: list[Any] = []
    probe_start = report.cpu_probe_ms()
    t0 = time.monotonic()
    try:
        _run(scaling.run(settings, rows, errors))
    except KeyboardInterrupt:
        errors.append({"error": "interrupted"})
    except Exception as exc:  # the cluster did not start: say so in the report
        errors.append({"error": repr(exc)})
        print(f"bench: scaling failed: {exc!r}", file=sys.stderr)
    result = {
        "version": 1,
        "mode": "scaling",
        "started_at": started_at.isoformat(timespec="seconds"),
        "elapsed_s": round(time.monotonic() - t0, 1),
        "machine": {
            **report.machine(),
            "cpu_probe_ms": {"start": probe_start, "end": report.cpu_probe_ms()},
        },
        "settings": {"profile": "quick" if args.quick else "standard", **settings.flat()},
        "roles": list(scaling.ROLES),
        "results": rows,
        "goal": scaling_report.node_goal(rows),
        "capacity": scaling_report.capacities(rows),
        "errors": errors,
    }
    report.write_json(result, output)
    png = output.with_suffix(".png")
    plotted = scaling_report.plot(result, png)
    print(scaling_report.render(result))
    print(f"\nJSON: {output}" + (f"\nplot: {png}" if plotted else ""))
    return 1 if errors else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.scaling:
        return scaling_main(args)
    settings = settings_from(args)
    started_at = datetime.now(UTC)
    stamp = started_at.strftime("%Y%m%d-%H%M%S")
    output: Path = args.output or REPO / "var" / "bench" / f"bench-{stamp}.json"
    results: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    probe_start = report.cpu_probe_ms()
    runs = list(ALL) if args.all else plan_runs(args.targets, tuple(args.scenarios))
    plan = phases.RunPlan(sum(planned_phases(run, settings) for run in runs))
    t0 = time.monotonic()
    try:
        for run in runs:
            started = time.monotonic()
            up: list[Started] = []
            try:
                for one in run.runs():
                    print(f"bench: starting {one.target}", file=sys.stderr)
                    up.append(Started(one, STARTERS[one.target](), one.settings(settings)))
            except Exception as exc:
                name = run.runs()[len(up)].target
                errors.append({"target": name, "scenario": "*", "error": f"did not start: {exc!r}"})
                print(f"bench: {name} did not start: {exc}", file=sys.stderr)
                for started_one in up:
                    started_one.target.stop()
                continue
            try:
                beside = up[0] if run.beside is not None else None
                _run(run_target(up[-1], results, errors, plan, beside))
            finally:
                for started_one in up:
                    started_one.target.stop()  # if its last scenario did not already
                took = time.monotonic() - started
                names = " and ".join(one.target for one in run.runs())
                print(f"bench: {names} done in {took:.0f} s", file=sys.stderr)
    except KeyboardInterrupt:
        errors.append({"target": "*", "scenario": "*", "error": "interrupted"})
    result = {
        "version": 1,
        "started_at": started_at.isoformat(timespec="seconds"),
        "elapsed_s": round(time.monotonic() - t0, 1),
        "machine": {
            **report.machine(),
            "cpu_probe_ms": {"start": probe_start, "end": report.cpu_probe_ms()},
        },
        "settings": {
            "profile": "quick" if args.quick else "standard",
            "targets": args.targets,
            "scenarios": args.scenarios,
            **settings.flat(),
        },
        "results": results,
        "ratios": report.ratios(results),
        "goals": report.goals(results),
        "errors": errors,
    }
    report.write_json(result, output)
    png = output.with_suffix(".png")
    plotted = report.plot(result, png)
    print(report.render(result))
    print(f"\nJSON: {output}" + (f"\nplot: {png}" if plotted else ""))
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
