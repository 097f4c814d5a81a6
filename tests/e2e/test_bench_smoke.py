"""The load tools still work: the bench in --quick mode and the Locust harness, each for a
few seconds against real processes. Correctness only (nothing lost, duplicated or out of
order at a low rate, the result files have their shape); never a speed assertion."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import ChatProcess, clean_env
from tests.support.services import POSTGRES, RABBITMQ, REDIS, in_ci, require

REPO = Path(__file__).resolve().parents[2]


def _needs(module: str) -> None:
    """Skip on a machine set up without the load extra; in CI (which installs it) fail."""
    if importlib.util.find_spec(module) is None:
        problem = f"{module} is not installed: .venv/bin/pip install -e '.[load]'"
        if in_ci():
            pytest.fail(problem + " (scripts/test installs it; CI never skips this test)")
        pytest.skip(problem)


def _check_room_row(row: dict[str, Any]) -> None:
    assert row["sent"] > 0 and row["accepted"] == row["sent"], row
    assert row["rejected"] == {} and row["skipped"] == 0, row
    assert row["deliveries_expected"] > 0, row
    assert row["delivered"] == row["deliveries_expected"], row
    assert row["lost"] == row["duplicated"] == row["order_violations"] == 0, row
    for key in ("p50", "p95", "p99", "max", "mean"):
        assert row["latency_ms"][key] is not None and row["latency_ms"][key] >= 0, row
    assert row["server_rss_kib"] > 0, row
    if sys.platform == "linux":  # /proc/stat: the whole machine, busy while the phase ran
        assert 0 < row["host_busy_percent"] <= 100, row
        assert 0 <= row["host_steal_percent"] < 100, row


def _bench(output: Path, *options: str, timeout: float) -> tuple[str, dict[str, Any]]:
    """Run ``python -m loadtests.bench --quick`` with ``options``: its stdout and JSON report."""
    return _load_tool("loadtests.bench", output, *options, timeout=timeout)


def _load_tool(
    module: str, output: Path, *options: str, timeout: float
) -> tuple[str, dict[str, Any]]:
    """Run ``python -m <module> --quick`` with ``options``: its stdout and JSON report."""
    run = subprocess.run(
        [sys.executable, "-m", module, "--quick", *options, "--output", str(output)],
        cwd=REPO,
        env=clean_env({}),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-3000:]
    return run.stdout, json.loads(output.read_text())


def test_bench_quick_on_embedded_and_reference(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    stdout, report = _bench(
        output,
        *("--scenarios", "small-rooms,idle", "--targets", "embedded,reference"),
        *("--rates", "10", "--duration", "2", "--drain", "15"),
        timeout=150,
    )
    assert report["version"] == 1 and report["errors"] == []
    assert {"cpu", "cores", "python", "packages"} <= set(report["machine"])
    assert report["settings"]["profile"] == "quick"

    rows = {(r["target"], r["scenario"], r["load"]): r for r in report["results"]}
    for target in ("embedded", "reference"):
        _check_room_row(rows[(target, "small-rooms", "10/s")])
        _check_room_row(rows[(target, "small-rooms", "closed")])
        idle = rows[(target, "idle", "60 sockets")]
        assert idle["sockets"] == 60 and idle["connect_failures"] == 0
        assert idle["rss_after_kib"] > 0
        assert idle["delivered"] == idle["deliveries_expected"] == 3 * 60
        assert idle["lost"] == idle["duplicated"] == 0
    ratio_keys = {(r["target"], r["scenario"], r["load"]) for r in report["ratios"]}
    assert ("embedded", "small-rooms", "10/s") in ratio_keys
    assert "latency in ms" in stdout and "embedded" in stdout
    if importlib.util.find_spec("matplotlib") is not None:
        assert output.with_suffix(".png").stat().st_size > 0


def test_locustfile_runs_headless_against_embedded(server: ChatProcess, tmp_path: Path) -> None:
    _needs("locust")
    stats = tmp_path / "locust"
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("locust")),
            "-f",
            str(REPO / "loadtests" / "locustfile.py"),
            "--headless",
            "-u",
            "6",
            "-r",
            "6",
            "-t",
            "5s",
            "--host",
            server.url,
            "--csv",
            str(stats),
            "--only-summary",
        ],
        cwd=tmp_path,
        env=clean_env({"CHAT_LOCUST_ROOM_SIZE": "3"}),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    with (tmp_path / "locust_stats.csv").open() as f:
        rows = {(r["Type"], r["Name"]): r for r in csv.DictReader(f)}
    sends = rows[("POST", "/rooms/{id}/messages")]
    deliveries = rows[("socketio", "message:new delivery")]
    assert int(sends["Request Count"]) > 0
    # Every member of a 3-member room gets each message, the sender included.
    assert int(deliveries["Request Count"]) >= int(sends["Request Count"])
    assert int(rows[("", "Aggregated")]["Failure Count"]) == 0, run.stderr[-3000:]


def test_all_runs_the_one_node_cluster_beside_the_cluster_at_its_two_highest_rates() -> None:
    from loadtests.bench import ALL, STANDARD, Run, phase_count, planned_phases

    cluster = next(run for run in ALL if run.target == "cluster")
    assert cluster.beside is not None and cluster.beside.target == "cluster-1"
    one_node = cluster.beside
    assert one_node.settings(STANDARD).small_rooms.rates == STANDARD.small_rooms.rates[-2:]
    assert phase_count(one_node.settings(STANDARD), "small-rooms") == 3  # two rates, closed
    # Beside each other, each runs its closed loop twice: two rates + 2 closed on one node;
    # on two nodes 4 + 2 small-rooms, 3 + 1 big-room, idle.
    assert planned_phases(cluster, STANDARD) == (2 + 2) + (4 + 2) + (3 + 1) + 1
    assert Run("embedded", ("small-rooms",)).settings(STANDARD) is STANDARD
    assert all(run.target != "cluster-1" for run in ALL)  # started only beside the cluster


def test_targets_cluster_1_and_cluster_are_paired_in_their_order() -> None:
    from loadtests.bench import plan_runs

    runs = plan_runs(["embedded", "cluster-1", "cluster"], ("small-rooms",))
    assert [run.target for run in runs] == ["embedded", "cluster"]
    assert runs[1].beside is not None and runs[1].beside.target == "cluster-1"
    assert [run.target for run in plan_runs(["cluster"], ("idle",))] == ["cluster"]


def test_bench_measures_one_node_and_two_in_adjacent_alternating_phases(tmp_path: Path) -> None:
    for service in (POSTGRES, REDIS, RABBITMQ):
        require(service)
    stdout, report = _bench(
        tmp_path / "bench.json",
        *("--scenarios", "small-rooms,idle", "--targets", "cluster-1,cluster", "--duration", "2"),
        timeout=240,
    )
    assert report["errors"] == []
    order = [(r["target"], r["load"]) for r in report["results"]]
    # The first pair starts with the one beside, the next with the other: drift cancels.
    # The closed loop, where the two are compared, runs twice, mirrored. The one beside is
    # still up for its next scenario, and runs it first.
    assert order == [
        ("cluster-1", "20/s"),
        ("cluster", "20/s"),
        ("cluster", "closed"),
        ("cluster-1", "closed"),
        ("cluster-1", "closed"),
        ("cluster", "closed"),
        ("cluster-1", "60 sockets"),
        ("cluster", "60 sockets"),
    ]
    for row in report["results"][:6]:
        _check_room_row(row)
    for idle in report["results"][6:]:
        assert idle["sockets"] == 60 and idle["delivered"] == idle["deliveries_expected"] > 0
    assert "one server node against two" in stdout


def test_bench_scaling_measures_every_role_for_every_node_and_worker_count(
    tmp_path: Path,
) -> None:
    for service in (POSTGRES, REDIS, RABBITMQ):
        require(service)
    from loadtests.scaling import ROLES

    stdout, report = _bench(
        tmp_path / "scaling.json",
        *("--scaling", "--nodes", "1,2", "--workers", "1,2", "--rate", "10", "--duration", "3"),
        *("--drain", "15", "--baseline", "1", "--churn"),
        timeout=300,
    )
    assert report["mode"] == "scaling" and report["errors"] == []
    rows = {(r["nodes"], r["workers"], r["workload"], r["churn"]): r for r in report["results"]}
    # The nodes line (1 worker) with both workloads, the workers line on 2 nodes, the churn.
    assert set(rows) == {
        (1, 1, "mixed", False),
        (1, 1, "direct-cross", False),
        (2, 1, "mixed", False),
        (2, 1, "direct-cross", False),
        (2, 2, "mixed", False),
        (2, 2, "mixed", True),
    }
    for row in rows.values():
        assert row["accepted"] == row["sent"] > 0, row
        assert row["delivered"] == row["deliveries_expected"] > 0, row
        assert row["lost"] == row["order_violations"] == 0, row
        # A SIGKILLed worker's unacknowledged batch is stored once and emitted again by the
        # next one (StoreMessages: clients dedupe by id): a copy is allowed there only.
        assert row["churn"] or row["duplicated"] == 0, row
        # Every role was found (servers, workers and each service by process name)...
        assert all(row["processes"][role] >= 1 for role in ROLES), row["processes"]
        # ...and has its CPU per message, the cluster's sum beside them.
        for role in (*ROLES, "cluster"):
            assert row["ms_per_message"][role] >= 0, (role, row["ms_per_message"])
        assert row["ms_per_message_raw"]["servers"] > 0, row
    assert rows[(2, 1, "direct-cross", False)]["cross_node"] is True
    two_workers = rows[(2, 2, "mixed", False)]
    assert len(two_workers["workers_detail"]) == 2
    assert two_workers["workers_uneven"] in (True, False)
    # The churn phase started a worker and killed one: three workers measured in it.
    assert len(rows[(2, 2, "mixed", True)]["workers_detail"]) == 3
    assert {(c["nodes"], c["workers"]) for c in report["capacity"]} == {(1, 1), (2, 1), (2, 2)}
    assert "CPU per accepted message" in stdout and "capacity model" in stdout
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "scaling.png").stat().st_size > 0


def test_bench_floor_measures_the_cluster_the_reference_and_each_service_in_one_run(
    tmp_path: Path,
) -> None:
    for service in (POSTGRES, REDIS, RABBITMQ):
        require(service)
    stdout, report = _load_tool(
        "loadtests.floor",
        tmp_path / "floor.json",
        *("--rate", "20", "--duration", "2", "--baseline", "1", "--drain", "15"),
        timeout=300,
    )
    assert report["mode"] == "floor"
    (measured,) = report["rounds"]
    for workload in ("mixed", "direct-cross"):
        cluster, reference = measured["after"][workload], measured["reference"][workload]
        for row in (cluster, reference):
            assert row["accepted"] == row["sent"] > 0, row
            assert row["delivered"] == row["deliveries_expected"] > 0, row
            assert row["lost"] == row["duplicated"] == row["order_violations"] == 0, row
        assert reference["count"] == reference["accepted"] and reference["ms_per_message"] > 0
    # Each service did its operations (every publish confirmed and consumed, every row
    # stored, every publish read by every subscriber) while its CPU was read.
    for name in ("rabbitmq", "rabbitmq classic", "postgres", "redis"):
        service = measured["services"][name]
        assert service["count"] == 40 and service["ms_per_message"] >= 0, (name, service)
    lines = {line["workload"]: line for line in report["summary"]}
    assert set(lines) == {"mixed", "direct-cross"}
    assert "floor" in stdout and lines["mixed"]["before"] is None
