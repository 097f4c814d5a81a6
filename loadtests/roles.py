"""CPU of each role of a cluster over a measured window, read from /proc: the servers, each
worker, and the services beside them (RabbitMQ, PostgreSQL, Redis) found by process name.

The services are shared with whatever else runs on the machine. PostgreSQL's backends say
which database they serve (in their command line), so only the backends of the bench's
own database are counted, with the server's shared processes (postmaster, WAL writer,
checkpointer...). RabbitMQ's ``beam.smp`` and ``redis-server`` serve everyone: their CPU
includes other clients' work, which is why each phase is preceded by an idle baseline of
the same processes (see ``loadtests.scaling``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
GENERATOR = "generator"
# PostgreSQL's processes that serve every database: counted whatever the database.
POSTGRES_SHARED = (
    "checkpointer",
    "background writer",
    "walwriter",
    "autovacuum launcher",
    "logical replication launcher",
    "stats collector",
    "archiver",
)


# Our own processes (Python, a few threads each) are also read in detail (``Detail``).
DETAILED_ROLES = ("servers", "workers")


@dataclass(frozen=True)
class Detail:
    """Where a process's CPU went, summed over its threads.

    ``user`` and ``system``: seconds, from /proc/<pid>/stat, counted by the kernel's tick
    (250 Hz here: a process that runs for short bursts is charged a whole tick when one
    lands in a burst, so short windows of an idle process read coarse). ``run``: seconds
    on a CPU by the scheduler's own clock (/proc/<pid>/task/*/schedstat, in ns: exact).
    ``sleeps``: times a thread blocked (voluntary context switches: for an event loop, each
    time it waited for I/O or a timer with nothing to do); ``preempted``: times a thread was
    taken off a CPU it wanted (involuntary). Threads that ended are no longer counted in
    ``run``, ``sleeps`` and ``preempted``.
    """

    user: float = 0.0
    system: float = 0.0
    run: float = 0.0
    sleeps: int = 0
    preempted: int = 0

    def minus(self, other: Detail) -> Detail:
        return Detail(
            **{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)}
        )


@dataclass(frozen=True)
class Reading:
    """One process's CPU so far, and when it started (clock ticks since boot: a pid that is
    reused by another process reads as a new process)."""

    started: int
    cpu: float
    detail: Detail | None = None


def read(pid: int, detailed: bool = False) -> Reading | None:
    """utime + stime and start time from /proc/<pid>/stat (and with ``detailed``, the
    process's ``Detail``); None for a process gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    # After the command name: state is field 0, utime 11, stime 12, starttime 19.
    user, system = int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK
    detail = _detail(pid, user, system) if detailed else None
    return Reading(int(fields[19]), user + system, detail)


def _detail(pid: int, user: float, system: float) -> Detail | None:
    run_ns = sleeps = preempted = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    for task in tasks:
        try:
            run_ns += int((task / "schedstat").read_text().split()[0])
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    sleeps += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    preempted += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the thread ended meanwhile
    return Detail(user, system, run_ns / 1e9, sleeps, preempted)


def boot_ticks_now() -> int:
    """Now, in clock ticks since boot (the unit of a process's start time)."""
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return int(uptime * CLK_TCK)


def _processes() -> list[tuple[int, str, str]]:
    """(pid, comm, command line) of every process we can read."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found.append((int(entry.name), comm, cmdline))
    return found


def service_pids(database: str | None) -> dict[str, list[int]]:
    """The pids of RabbitMQ (``beam.smp``), PostgreSQL (the postmaster, its shared
    processes, and the backends of ``database``) and Redis (``redis-server``)."""
    roles: dict[str, list[int]] = {"rabbitmq": [], "postgres": [], "redis": []}
    for pid, comm, cmdline in _processes():
        if comm == "beam.smp":
            roles["rabbitmq"].append(pid)
        elif comm == "redis-server":
            roles["redis"].append(pid)
        elif comm == "postgres" or cmdline.startswith("postgres:"):
            title = cmdline.strip()
            postmaster = not title.startswith("postgres:")
            shared = any(title.endswith(name) for name in POSTGRES_SHARED)
            ours = database is not None and f" {database} " in f"{title} "
            if postmaster or shared or ours:
                roles["postgres"].append(pid)
    return roles


@dataclass
class RoleMeter:
    """CPU seconds per role over a window, processes coming and going meanwhile.

    ``roles`` says, when called, which pids play which role. ``sample()`` (every second
    or so, and just before killing a process on purpose) keeps each process's last
    reading, so one that exits mid-window still counts up to its last sample; one that
    starts mid-window counts from zero.
    """

    roles: Callable[[], Mapping[str, list[int]]]
    _first: dict[tuple[str, int], Reading] = field(default_factory=dict)
    _last: dict[tuple[str, int], Reading] = field(default_factory=dict)
    _started_ticks: int = 0
    _started_wall: float = 0.0
    _generator: float = 0.0
    _sampled: bool = False

    def start(self) -> None:
        self._first, self._last, self._sampled = {}, {}, False
        self._started_ticks = boot_ticks_now()
        self._started_wall = time.perf_counter()
        self._generator = time.process_time()
        self.sample()

    def sample(self) -> None:
        for role, pids in self.roles().items():
            for pid in pids:
                reading = read(pid, detailed=role in DETAILED_ROLES)
                if reading is None:
                    continue
                key = (role, pid)
                first = self._first.get(key)
                if first is not None and first.started != reading.started:
                    continue  # the pid was reused by another process
                if first is None:
                    born_inside = self._sampled and reading.started >= self._started_ticks
                    zero = Reading(reading.started, 0.0, reading.detail and Detail())
                    self._first[key] = zero if born_inside else reading
                self._last[key] = reading
        self._sampled = True

    def stop(self) -> Window:
        self.sample()
        wall = max(time.perf_counter() - self._started_wall, 1e-9)
        per_process: dict[str, dict[int, float]] = {}
        details: dict[str, dict[int, Detail]] = {}
        for key, last in self._last.items():
            role, pid = key
            first = self._first[key]
            per_process.setdefault(role, {})[pid] = max(last.cpu - first.cpu, 0.0)
            if last.detail is not None and first.detail is not None:
                details.setdefault(role, {})[pid] = last.detail.minus(first.detail)
        for role in self.roles():
            per_process.setdefault(role, {})
        per_process[GENERATOR] = {os.getpid(): time.process_time() - self._generator}
        return Window(wall, per_process, details)


@dataclass(frozen=True)
class Window:
    """What a meter measured: wall seconds and CPU seconds per role and process."""

    wall: float
    cpu: dict[str, dict[int, float]]
    # For the roles in DETAILED_ROLES: each process's Detail over the window.
    detail: dict[str, dict[int, Detail]] = field(default_factory=dict)

    def role_detail(self, role: str) -> Detail:
        """The role's processes' Details, summed."""
        total = Detail()
        for one in self.detail.get(role, {}).values():
            total = Detail(
                **{f.name: getattr(total, f.name) + getattr(one, f.name) for f in fields(one)}
            )
        return total

    def role_seconds(self) -> dict[str, float]:
        return {role: sum(pids.values()) for role, pids in self.cpu.items()}

    def role_percent(self) -> dict[str, float]:
        """Each role's CPU in % of one core over the window."""
        return {role: round(s / self.wall * 100, 2) for role, s in self.role_seconds().items()}

    def net_seconds(self, role: str, baseline: Window | None) -> float:
        """The role's CPU seconds beyond what it spends idle: the ``baseline``'s rate (other
        clients of a shared service, sockets' pings, timers) over this window's wall time."""
        used = sum(self.cpu.get(role, {}).values())
        if baseline is None:
            return used
        idle_rate = sum(baseline.cpu.get(role, {}).values()) / baseline.wall
        return max(used - idle_rate * self.wall, 0.0)
