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


def _closed(target: str, accepted_per_s: float) -> dict[str, Any]:
    return _room_row(target, "closed", accepted_per_s=accepted_per_s)


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


def test_the_scaling_goal_is_the_mean_over_every_closed_loop_pair() -> None:
    one, two = "cluster-1", "cluster"
    rows = [_closed(two, 300.0), _closed(one, 350.0), _closed(one, 250.0), _closed(two, 290.0)]
    goal = _goal(rows, "a second server node")
    # 590 against 600: one pair alone would read 0.86x or 1.16x.
    assert goal["measured"] == "350, 250 -> 300, 290 msg/s (0.98x)"
    assert goal["met"] is True


def test_a_phase_run_twice_has_its_own_ratio_to_the_reference() -> None:
    rows = [_closed("cluster", 300.0), _closed("cluster", 250.0), _closed("reference", 1000.0)]
    assert [r["accepted_per_s"] for r in report.ratios(rows)] == [0.3, 0.25]
    table = report.render(
        {
            "machine": {"cpu": "test", "cores": 2, "python": "3", "platform": "p",
                        "packages": {}, "commit": None},
            "settings": {},
            "results": [{**r, "accept_latency_ms": {"p50": 1.0}, "rejected": {}, "skipped": 0,
                         "generator_cpu_percent": 10.0} for r in rows],
            "errors": [],
        }
    )  # fmt: skip
    assert "0.30x" in table and "0.25x" in table
