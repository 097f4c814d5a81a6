"""One measured phase of a bench scenario: an open-loop rate or a closed-loop saturation run,
then a drain, then its figures."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from loadtests.driver import Member, PhaseStats, Population, Room, now


def percentiles(samples: list[float]) -> dict[str, float | None]:
    """p50/p95/p99/max/mean in milliseconds (nearest rank), None when there is no sample."""
    if not samples:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(samples)

    def rank(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2)

    return {
        "p50": rank(0.50),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "max": round(ordered[-1] * 1000, 2),
        "mean": round(sum(ordered) / len(ordered) * 1000, 2),
    }


@contextlib.contextmanager
def generator_gc_paused() -> Iterator[None]:
    """No garbage collection in the generator while a phase is measured.

    The generator is a Python process too: a full collection of its sockets' objects
    stalled it for up to ~100 ms, and every delivery it read meanwhile was timed late, the
    server's figure for the generator's pause (p99 110 ms at 10 msg/s). Collected between
    phases instead; a phase's garbage is a few MB.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


class Progress:
    """One status line on stderr, rewritten in place on a terminal, every few seconds if not."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def update(self, text: str, fraction: float | None = None, force: bool = False) -> None:
        t = time.monotonic()
        if not force and t - self._last < (0.25 if self.tty else 5.0):
            return
        self._last = t
        if fraction is not None:
            text = f"{bar(fraction)} {text}"
        line = f"[{self.label}] {text}"
        if self.tty:
            sys.stderr.write("\r\x1b[2K" + line[:160])
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def done(self, text: str) -> None:
        self.update(text, force=True)
        if self.tty:
            sys.stderr.write("\n")


@dataclass(frozen=True)
class HostCpu:
    """The machine's CPU time so far, all cores, from the first line of /proc/stat."""

    busy: int
    steal: int
    total: int

    @classmethod
    def read(cls) -> HostCpu | None:
        """None where there is no /proc/stat (not Linux)."""
        try:
            with open("/proc/stat") as stat:
                fields = [int(v) for v in stat.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        # user nice system idle iowait irq softirq steal (guest time is inside user).
        idle, steal = sum(fields[3:5]), fields[7] if len(fields) > 7 else 0
        total = sum(fields[:8])
        return cls(busy=total - idle - steal, steal=steal, total=total)


def host_percents(earlier: HostCpu | None, later: HostCpu | None) -> dict[str, float | None]:
    """Busy and stolen time between two readings, in % of the whole machine (all cores)."""
    if earlier is None or later is None or later.total <= earlier.total:
        return {"host_busy_percent": None, "host_steal_percent": None}
    span = later.total - earlier.total
    return {
        "host_busy_percent": round((later.busy - earlier.busy) / span * 100, 1),
        "host_steal_percent": round((later.steal - earlier.steal) / span * 100, 1),
    }


class MeterStart(NamedTuple):
    """The readings a phase's figures are measured from."""

    wall: float
    server_cpu: float
    generator_cpu: float
    host: HostCpu | None


@dataclass
class Meter:
    """CPU seconds of the server processes and of this generator around a phase, and how
    busy the whole machine was meanwhile.

    The target's processes are not all of it: RabbitMQ, PostgreSQL and Redis run beside
    them, and the host may take time back (steal). A tail measured with the machine ~95%
    busy is queueing for a core, which the target's own CPU figures do not show.
    """

    server_cpu: Callable[[], float]
    server_rss_kib: Callable[[], int]

    def start(self) -> MeterStart:
        return MeterStart(now(), self.server_cpu(), time.process_time(), HostCpu.read())

    def stop(self, started: MeterStart) -> dict[str, Any]:
        wall = max(now() - started.wall, 1e-9)
        generator_cpu = time.process_time() - started.generator_cpu
        return {
            "server_cpu_percent": round((self.server_cpu() - started.server_cpu) / wall * 100, 1),
            "generator_cpu_percent": round(generator_cpu / wall * 100, 1),
            **host_percents(started.host, HostCpu.read()),
            "server_rss_kib": self.server_rss_kib(),
        }


def bar(fraction: float, width: int = 20) -> str:
    """``[#########-----------]  45%``"""
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * width)
    return f"[{'#' * filled}{'-' * (width - filled)}] {fraction * 100:3.0f}%"


@dataclass
class RunPlan:
    """The measured phases of the whole run, for the "k/N" in front of each status line."""

    total: int
    started: int = 0

    def next(self) -> str:
        self.started += 1
        return f"{self.started}/{self.total}"

    def skip(self, phases: int) -> None:
        """Phases that will not run (a saturated target skips its higher rates)."""
        self.total -= phases


def _status(stats: PhaseStats, t0: float, duration: float) -> tuple[str, float]:
    elapsed = now() - t0
    recent = stats.latencies[-500:]
    p50 = percentiles(recent)["p50"]
    text = (
        f"{min(elapsed, duration):5.1f}/{duration:.0f}s sent {stats.sent} "
        f"accepted {stats.accepted} delivered {stats.delivered}/{stats.expected} "
        f"p50 {p50 if p50 is not None else '-'} ms"
    )
    return text, elapsed / duration


async def _ticker(progress: Progress, stats: PhaseStats, t0: float, duration: float) -> None:
    while True:
        text, fraction = _status(stats, t0, duration)
        progress.update(text, fraction)
        await asyncio.sleep(0.25)


async def open_loop(
    population: Population,
    rate: float,
    duration: float,
    progress: Progress,
    max_in_flight: int = 2000,
    senders: Iterator[tuple[Member, Room]] | None = None,
) -> PhaseStats:
    """Send at ``rate`` msg/s whatever the answers, senders in turn (or in the order
    ``senders`` gives). Latency counts from the scheduled send time, so a slow server cannot
    slow the generator down and hide its own queueing (coordinated omission)."""
    stats = population.tracker.new_phase()
    senders = senders or itertools.cycle(population.senders())
    tasks: set[asyncio.Task[None]] = set()
    ticker = asyncio.create_task(_ticker(progress, stats, stats.started_at, duration))
    t0 = stats.started_at
    for n in itertools.count():
        at = t0 + n / rate
        if at - t0 >= duration:
            break
        delay = at - now()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(tasks) >= max_in_flight:
            stats.skipped += 1
            continue
        sender, room = next(senders)
        task = asyncio.create_task(population.send(sender, room, at))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    ticker.cancel()
    return stats


async def closed_loop(
    population: Population, duration: float, progress: Progress, window: int = 1
) -> PhaseStats:
    """Each sender keeps ``window`` messages in flight, each waiting until every member got
    it: the end-to-end saturation throughput at that concurrency."""
    stats = population.tracker.new_phase()
    t0 = stats.started_at
    ticker = asyncio.create_task(_ticker(progress, stats, t0, duration))

    async def sender_loop(sender: Any, room: Any) -> None:
        while now() - t0 < duration:
            await population.send(sender, room, now(), wait=True)

    loops = [sender_loop(s, r) for s, r in population.senders() for _ in range(window)]
    await asyncio.gather(*loops)
    ticker.cancel()
    return stats


async def drain(population: Population, within: float) -> None:
    """Wait until every expected delivery came, for at most ``within`` seconds: what is
    still missing then counts as lost."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(population.tracker.settled.wait(), within)


def summarize(stats: PhaseStats, duration: float, lost: int) -> dict[str, Any]:
    span = max((stats.last_delivery_at or now()) - stats.started_at, duration, 1e-9)
    return {
        "duration_s": round(duration, 2),
        "sent": stats.sent,
        "accepted": stats.accepted,
        "rejected": dict(stats.rejected),
        "skipped": stats.skipped,
        "accepted_per_s": round(stats.accepted / duration, 1),
        "deliveries_expected": stats.expected,
        "delivered": stats.delivered,
        "deliveries_per_s": round(stats.delivered / span, 1),
        "latency_ms": percentiles(stats.latencies),
        "accept_latency_ms": percentiles(stats.accept_latencies),
        "lost": lost,
        "duplicated": stats.duplicated,
        "order_violations": stats.order_violations,
        "stray": stats.stray,
    }
