"""The bench's goal verdicts say what the machine was doing when a goal's phases ran: the
host's steal and how busy it was, beside the figure the goal is checked on."""

from __future__ import annotations

from typing import Any

from loadtests import report


def _room_row(target: str, load: str, **figures: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "target": target,
        "scenario": "small-rooms",
        "load": load,
        "offered_rate": None if load == "closed" else float(load.removesuffix("/s")),
        "accepted_per_s": 200.0,
        "deliveries_per_s": 2000.0,
        "latency_ms": {"p50": 5.0, "p95": 9.0, "p99": 20.0},
        "lost": 0,
        "duplicated": 0,
        "order_violations": 0,
        "server_cpu_percent": 80.0,
        "host_busy_percent": 50.0,
        "host_steal_percent": 1.0,
    }
    row.update(figures)
    return row


def _goal(results: list[dict[str, Any]], starts: str) -> dict[str, Any]:
    return next(g for g in report.goals(results) if g["goal"].startswith(starts))


def test_the_saturation_goal_shows_the_steal_and_the_cost_per_cpu_second() -> None:
    ours = _room_row(
        "embedded", "closed", accepted_per_s=400.0, deliveries_per_s=4000.0,
        server_cpu_percent=80.0, host_steal_percent=26.0,
    )  # fmt: skip
    ref = _room_row(
        "reference", "closed", accepted_per_s=1000.0, deliveries_per_s=10000.0,
        server_cpu_percent=100.0, host_steal_percent=3.0,
    )  # fmt: skip
    goal = _goal([ours, ref], "embedded small-rooms saturated")
    # 500 messages per CPU-second against 1000: the verdict itself stays on msg/s.
    assert goal["measured"] == (
        "0.40x, 0.40x (400 vs 1000 msg/s; per server CPU-second 0.50x; host steal 26% vs 3%)"
    )
    assert goal["met"] is False


def test_a_quiet_host_is_not_annotated_with_steal() -> None:
    ours = _room_row("embedded", "closed", accepted_per_s=600.0, deliveries_per_s=6000.0)
    ref = _room_row("reference", "closed", accepted_per_s=1000.0, deliveries_per_s=10000.0)
    goal = _goal([ours, ref], "embedded small-rooms saturated")
    assert "steal" not in goal["measured"]
    assert goal["met"] is True


def test_a_latency_goal_shows_how_busy_the_machine_was() -> None:
    row = _room_row(
        "cluster", "200/s", latency_ms={"p50": 18.0, "p95": 109.0, "p99": 268.0},
        host_busy_percent=92.0, host_steal_percent=0.2,
    )  # fmt: skip
    goal = _goal([row], "cluster small-rooms at 200/s")
    assert goal["measured"] == "p99 268.0 ms, lost 0, dup 0, order 0; host busy 92%"
    assert goal["met"] is False
