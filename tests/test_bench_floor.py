"""The floor mode's arithmetic, on made-up rounds: no process is started here (the smoke
test in tests/e2e/test_bench_smoke.py runs it for real)."""

from __future__ import annotations

from typing import Any

from loadtests.floor import _net, render, summary
from loadtests.roles import Window


def _round(before: float, after: float, reference: float, services: dict[str, float]) -> Any:
    def cluster(ms: float) -> dict[str, Any]:
        return {w: {"ms_per_message": {"cluster": ms}} for w in ("mixed", "direct-cross")}

    return {
        "before": cluster(before),
        "after": cluster(after),
        "reference": {w: {"ms_per_message": reference} for w in ("mixed", "direct-cross")},
        "services": {
            "pacing": {"ms_per_message": 0.0, "client_ms_per_message": 0.05},
            **{
                name: {"ms_per_message": ms, "client_ms_per_message": 0.05 + ms / 2}
                for name, ms in services.items()
            },
        },
    }


SERVICES = {"rabbitmq": 1.0, "rabbitmq classic": 0.8, "postgres": 0.5, "redis": 0.1}


def test_the_floor_is_the_reference_plus_each_service_and_the_goal_a_share_of_before() -> None:
    rounds = [
        _round(7.0, 6.0, 2.0, SERVICES),
        _round(8.0, 6.4, 2.4, {**SERVICES, "rabbitmq": 1.2}),
        _round(9.0, 9.0, 2.2, {**SERVICES, "rabbitmq": 1.1}),
    ]
    mixed = {line["workload"]: line for line in summary(rounds)}["mixed"]
    # Medians over the rounds: reference 2.2, rabbitmq 1.1 (classic is beside, not added).
    assert mixed["reference"] == 2.2 and mixed["rabbitmq"] == 1.1
    # The bare clients: half of each floor service's figure here, the pacing taken off.
    assert mixed["clients"] == round((1.1 + 0.5 + 0.1) / 2, 2)
    assert mixed["floor"] == round(2.2 + 1.1 + 0.5 + 0.1 + 0.85, 2)
    assert mixed["before"] == 8.0 and mixed["after"] == 6.4
    assert mixed["goal"] == 4.8  # 0.6 x the median before
    assert mixed["after_vs_before"] == [round(6.0 / 7.0, 2), 0.8, 1.0]  # each round's pair
    assert mixed["floor_vs_before"] == round(4.75 / 8.0, 2)
    table = render(summary(rounds), {"rate": 200})
    assert "floor" in table and "4.75" in table and "0.59" in table


def test_without_a_before_run_there_is_no_goal() -> None:
    rounds = [{k: v for k, v in _round(7.0, 6.0, 2.0, SERVICES).items() if k != "before"}]
    line = summary(rounds)[0]
    assert line["before"] is None and "goal" not in line and line["after"] == 6.0


def test_a_part_that_failed_in_a_round_is_left_out_of_that_round_only() -> None:
    whole = _round(7.0, 6.0, 2.0, SERVICES)
    failed = {k: v for k, v in _round(9.0, 9.0, 3.0, SERVICES).items() if k != "reference"}
    mixed = {line["workload"]: line for line in summary([whole, failed])}["mixed"]
    assert mixed["reference"] == 2.0  # from the round that has it
    assert mixed["before"] == 8.0 and mixed["after_vs_before"] == [round(6.0 / 7.0, 2), 1.0]
    nothing = summary([{"round": 1}])[0]
    assert nothing["floor"] is None and nothing["before"] is None
    assert "-" in render(summary([{"round": 1}]), {})


def test_a_service_is_charged_only_what_it_spent_beyond_its_idle_rate() -> None:
    idle = Window(10.0, {"redis": {1: 0.5}}, {})  # 5% of a core while idle
    busy = Window(20.0, {"redis": {1: 1.0 + 3.0}}, {})  # the idle 1.0 s + 3.0 s of work
    assert _net("redis", idle, busy, 1000) == {
        "ms_per_message": 3.0,
        "idle_percent": 5.0,
        "busy_percent": 20.0,
    }
