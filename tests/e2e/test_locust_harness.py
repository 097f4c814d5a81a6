"""The Locust harness tells the truth: deliveries that arrived are latency, the missing ones
are counted and reconciled (late or lost), a run that broke its limits exits non-zero, the
master of a distributed run counts exactly what its workers counted, a step shape reports
its knee, and the web UI can run a test twice. Locust runs for seconds, a few users."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from loadtests.delivery_tally import Route, Tally, percentile
from loadtests.reconcile import Missing, classify
from loadtests.run_verdict import Limits, Window, breaches, knee
from tests.support.cluster import cluster
from tests.support.processes import ChatProcess, clean_env, free_port
from tests.support.services import POSTGRES, RABBITMQ, REDIS, in_ci, require

REPO = Path(__file__).resolve().parents[2]
LOCUST = str(Path(sys.executable).with_name("locust"))
LOCUSTFILE = str(REPO / "loadtests" / "locustfile.py")


# -- the pieces, on made-up data ----------------------------------------------------------
def test_classifier_tells_late_from_lost_and_never_guesses() -> None:
    missing = [
        Missing("m1", 1, "room-a", "n1", "n2"),  # arrived after the timeout: late
        Missing("m2", 2, "room-a", "n1", "n2"),  # stored, never arrived: late
        Missing("m3", 3, "room-a", "n1", "n1"),  # accepted, not stored: lost
        Missing("m4", 4, "room-b", "n2", "n1"),  # room-b's history unreadable: unchecked
    ]
    stored: dict[str, set[str] | None] = {"room-a": {"m0", "m1", "m2"}, "room-b": None}
    result = classify(missing, {("m1", 1)}, stored)
    assert result.total() == Counter({"late": 2, "lost": 1, "unchecked": 1})
    assert result.by_node["n2"] == Counter({"late": 2})
    assert result.by_node["n1"] == Counter({"lost": 1, "unchecked": 1})
    assert result.arrived_after_timeout == 1


def test_tallies_of_several_processes_add_up_to_one_process_counting_everything() -> None:
    one, a, b = Tally(), Tally(), Tally()
    for i, ms in enumerate([3.0, 40.0, 250.0, 1234.0, 12.0, 7.0]):
        one.delivered("n1", "n2", ms)
        (a if i % 2 else b).delivered("n1", "n2", ms)
    for t in (one, a):
        t.count("missing", "n2", "n1")
        t.node_posts("n1").sent += 1
    merged = Tally.merged([Tally.from_dict(a.to_dict()), Tally.from_dict(b.to_dict())])
    assert merged.to_dict() == one.to_dict()
    assert percentile(merged.total().latency, 0.5) == 12.0
    assert merged.minus(a).total().counts["delivered"] == 3


def _window(
    users: int, delivered: int, p99_ms: float, missing: int = 0, node: str = "n1"
) -> Window:
    tally = Tally()
    for _ in range(delivered):
        tally.delivered("n1", node, p99_ms)
    tally.count("missing", "n1", node, missing)
    return Window(f"{users} users", users, 10.0, tally, http_calls=100, http_failures=0)


def test_limits_and_the_knee_per_node_and_for_the_cluster() -> None:
    limits = Limits(loss_budget=0, p95_ms=500, p99_ms=1000, max_error_rate=0.01)
    route = Route()
    route.counts["missing"] = 1
    assert breaches(route, 100, 2, limits) == [
        "1 faulty deliveries (missing 1, duplicated 0, out of order 0) > budget 0",
        "HTTP error rate 2.00% (2/100) > 1.00%",
    ]
    assert breaches(Route(), 100, 1, limits) == []
    steps = [
        _window(10, 100, 50),
        _window(20, 200, 80, node="n2"),
        _window(30, 290, 600, node="n2"),  # n2's p95 breaks
        _window(40, 300, 90),
    ]
    result = knee(steps, limits)
    assert result.cluster is steps[1] and result.broken_at is steps[2]
    assert result.nodes == {"n1": steps[3], "n2": steps[1]}
    assert Limits.from_env({"CHAT_LOCUST_P99_MS": "0", "CHAT_LOCUST_LOSS_BUDGET": "3"}) == Limits(
        loss_budget=3, p99_ms=0
    )


# -- real runs -----------------------------------------------------------------------------
def _needs_locust() -> None:
    if importlib.util.find_spec("locust") is None:
        problem = "locust is not installed: .venv/bin/pip install -e '.[load]'"
        if in_ci():
            pytest.fail(problem + " (scripts/test installs it; CI never skips this test)")
        pytest.skip(problem)


def _wait(what: str, check: Callable[[], bool], timeout: float, proc: Any = None) -> None:
    """Poll ``check`` until it holds (processes and files have no event to wait on)."""
    deadline = time.monotonic() + timeout
    while not check():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"Locust exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _csv_count(prefix: Path, name: str) -> int:
    """A row's request count in Locust's live CSV (rewritten every second)."""
    path = Path(f"{prefix}_stats.csv")
    if not path.exists():
        return 0
    with path.open() as f:
        for row in csv.DictReader(f):
            if row.get("Name") == name and row.get("Request Count"):
                return int(row["Request Count"])
    return 0


def _summary(report: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((report / "summary.json").read_text())
    return summary


def _env(report: Path, **extra: str) -> dict[str, str]:
    return clean_env({"CHAT_LOCUST_REPORT": str(report), "CHAT_LOCUST_ROOM_SIZE": "3"} | extra)


def test_step_shape_on_embedded_reports_every_step_and_the_knee(
    server: ChatProcess, tmp_path: Path
) -> None:
    _needs_locust()
    report = tmp_path / "report"
    env = _env(
        report,
        CHAT_LOCUST_STEP_USERS="3",
        CHAT_LOCUST_STEP_ADD="3",
        CHAT_LOCUST_STEP_MAX="6",
        CHAT_LOCUST_STEP_SECONDS="4",
        CHAT_LOCUST_STEP_SETTLE="1",
        CHAT_LOCUST_SPAWN_RATE="6",
        CHAT_LOCUST_LOSS_TIMEOUT="5",
        # Correctness only: latency limits off, so a busy machine cannot fail the run.
        CHAT_LOCUST_P95_MS="0",
        CHAT_LOCUST_P99_MS="0",
    )
    shapes = f"{LOCUSTFILE},{REPO / 'loadtests' / 'shape_step.py'}"
    run = subprocess.run(
        [LOCUST, "-f", shapes, "--headless", "--host", server.url, "--only-summary"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "chat load test: PASS" in run.stdout
    summary = _summary(report)
    assert summary["passed"] and summary["breaches"] == []
    assert [w["users"] for w in summary["windows"]] == [3, 6]
    assert "cluster: 6 users" in summary["knee"] and "no step broke a limit" in summary["knee"]
    with (report / "final.csv").open() as f:
        rows = {(r["type"], r["name"]): r for r in csv.DictReader(f)}
    deliveries = rows[("socketio", "message:new delivery")]
    assert int(deliveries["count"]) > 0 and int(deliveries["failures"]) == 0
    assert rows[("socketio", "deliveries total")]["count"] == deliveries["count"]
    assert int(rows[("HTTP", "total")]["count"]) > 0
    (node,) = summary["nodes"]
    assert node["node"] == server.url and node["delivered"] == int(deliveries["count"])
    assert (report / "report.html").read_text().count("<table>") >= 4
    assert (report / "load.png").stat().st_size > 0


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[Any]:
    for service in (POSTGRES, REDIS, RABBITMQ):
        require(service)
    workdir = tmp_path / "cluster"
    workdir.mkdir()
    with cluster(workdir, servers=2, workers=1) as c:
        yield c


def test_distributed_run_counts_a_frozen_then_killed_worker_as_late_then_lost(
    two_nodes: Any, tmp_path: Path
) -> None:
    """Master + 2 Locust workers on 2 nodes; the chat worker is frozen (deliveries late: it
    stores them once thawed), then killed (202s never stored: lost). The master must count
    what the workers counted, class each miss, and exit non-zero."""
    _needs_locust()
    report, stats = tmp_path / "report", tmp_path / "stats"
    hosts = ",".join(s.url for s in two_nodes.servers)
    env = _env(report, CHAT_LOCUST_LOSS_TIMEOUT="2", CHAT_LOCUST_P95_MS="0", CHAT_LOCUST_P99_MS="0")
    port = free_port()
    master_at = ["--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)]
    worker_of = ["--master-host", "127.0.0.1", "--master-port", str(port)]
    log = (tmp_path / "master.log").open("w")
    master = subprocess.Popen(
        [
            *(LOCUST, "-f", LOCUSTFILE, "--master", *master_at, "--expect-workers", "2"),
            "--headless",
            *("-u", "6", "-r", "6", "-t", "90s", "--host", hosts),
            *("--csv", str(stats), "--only-summary"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    workers = [
        subprocess.Popen(
            [LOCUST, "-f", LOCUSTFILE, "--worker", *worker_of],
            cwd=tmp_path,
            env=env,
            stdout=(tmp_path / f"worker{i}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    chat_worker = two_nodes.workers[0].proc
    try:
        _wait("deliveries", lambda: _csv_count(stats, "message:new delivery") > 0, 60, master)
        os.kill(chat_worker.pid, signal.SIGSTOP)  # accepted messages wait in the queue
        _wait("a missing delivery", lambda: _csv_count(stats, "message:new missing") > 0, 30)
        os.kill(chat_worker.pid, signal.SIGCONT)  # ... and are stored and delivered late
        _wait("a late arrival", lambda: _csv_count(stats, "message:new late arrival") > 0, 30)
        missing_before_kill = _csv_count(stats, "message:new missing")
        two_nodes.workers[0].kill()  # what is accepted from now on is never stored
        _wait(
            "deliveries missing after the kill",
            lambda: _csv_count(stats, "message:new missing") > missing_before_kill,
            30,
        )
        master.send_signal(signal.SIGTERM)
        code = master.wait(90)
    finally:
        for p in [master, *workers]:
            if p.poll() is None:
                p.kill()
            p.wait()
    output = (tmp_path / "master.log").read_text()
    assert code == 1, output[-4000:]
    assert "chat load test: FAIL (2 Locust process(es)" in output, output[-4000:]
    summary = _summary(report)
    assert not summary["passed"] and "faulty deliveries" in summary["breaches"][0]
    classes = Counter[str]()
    for counts in summary["reconciliation"]["by_node"].values():
        classes.update(counts)
    assert classes["late"] > 0 and classes["lost"] > 0, output[-4000:]
    assert classes["unchecked"] == 0
    # Exact: the master's totals are the sums of what each worker counted on its own.
    own = [json.loads(p.read_text()) for p in report.glob("process-*.json")]
    assert len(own) == 2
    workers_tally = Tally.merged(Tally.from_dict(o["tally"]) for o in own)
    assert Tally.from_dict(summary["tally"]).to_dict() == workers_tally.to_dict()
    total = workers_tally.total().counts
    assert total["missing"] == classes["late"] + classes["lost"] > 0
    # The master's Locust row counts every missing delivery too, not only those reported
    # before it quit.
    assert "message:new missing" in output
    # Both nodes carried posts and deliveries.
    assert {n["node"] for n in summary["nodes"]} == {s.url for s in two_nodes.servers}
    assert all(n["delivered"] > 0 and n["posts"] > 0 for n in summary["nodes"])


@pytest.mark.parametrize("processes", [[], ["--processes", "1"]], ids=["local", "master"])
def test_web_ui_starts_stops_and_starts_again(
    server: ChatProcess, tmp_path: Path, processes: list[str]
) -> None:
    """Twice: a run, a stop, a report of that run. A master must not take a worker's
    numbers of the first run (reported until it hears of the second) for the second's."""
    _needs_locust()
    report, port = tmp_path / "report", free_port()
    ui = f"http://127.0.0.1:{port}"
    env = _env(report, CHAT_LOCUST_LOSS_TIMEOUT="5", CHAT_LOCUST_P95_MS="0", CHAT_LOCUST_P99_MS="0")
    locust = subprocess.Popen(
        [
            *(LOCUST, "-f", LOCUSTFILE, "--host", server.url),
            *("--web-host", "127.0.0.1", "--web-port", str(port), *processes),
        ],
        cwd=tmp_path,
        env=env,
        stdout=(tmp_path / "locust.log").open("w"),
        stderr=subprocess.STDOUT,
    )

    def posts() -> int:
        stats = httpx.get(f"{ui}/stats/requests", timeout=5).json()
        return sum(s["num_requests"] for s in stats["stats"] if s["name"] == "/rooms/{id}/messages")

    def state() -> str:
        return str(httpx.get(f"{ui}/stats/requests", timeout=5).json()["state"])

    def up() -> bool:
        try:
            return httpx.get(ui, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait("the web UI", up, 30, locust)
        for attempt in (1, 2):
            swarm = {"user_count": "3", "spawn_rate": "3", "host": server.url}
            assert httpx.post(f"{ui}/swarm", data=swarm, timeout=5).status_code == 200
            # /swarm starts the run in a greenlet: its stats are cleared once it is spawning.
            _wait(f"run {attempt}", lambda: state() in ("spawning", "running"), 30, locust)
            _wait(f"posts of run {attempt}", lambda: posts() > 0, 60, locust)
            # The stop answers once the users' messages have drained (up to the loss timeout).
            stop = httpx.post(f"{ui}/stop", timeout=60)
            assert stop.status_code == 200 and stop.json()["success"]
            _wait(f"run {attempt} to stop", lambda: state() == "stopped", 60, locust)
            summary = _summary(report)
            assert summary["passed"], summary["breaches"]
            posted = summary["tally"]["posts"][server.url][0]
            assert posted == posts() > 0  # this run's posts, all of them, no more
            (report / "summary.json").unlink()
    finally:
        locust.send_signal(signal.SIGTERM)
        try:
            locust.wait(30)
        except subprocess.TimeoutExpired:
            locust.kill()
            locust.wait()
