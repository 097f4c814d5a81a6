"""The scaling mode's pieces that need no cluster: the workloads' placement, a worker's
share of the work, the capacity model and the per-role CPU meter."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from loadtests import scaling_report
from loadtests.roles import RoleMeter, Window
from loadtests.scaling import worker_shares
from loadtests.workloads import Workload, cross_placement, message_plan, placement


def test_direct_cross_rooms_put_their_two_members_on_two_different_nodes() -> None:
    rooms = Workload(cross_pairs=50).cross_rooms()
    for nodes in (2, 3, 8):
        placed = cross_placement(rooms, nodes, seed=1)
        assert all(placed[a] != placed[b] for a, b in (room.members for room in rooms))
        assert set(placed.values()) == set(range(nodes))
    # One node: nowhere else to go.
    assert set(cross_placement(rooms, 1, seed=1).values()) == {0}


def test_the_workload_is_the_same_for_a_seed_and_follows_the_shares() -> None:
    workload = Workload(seed=5)
    assert workload.mixed_rooms() == Workload(seed=5).mixed_rooms()
    assert placement(200, 4, seed=5) == placement(200, 4, seed=5)
    rooms = workload.mixed_rooms()
    plan = message_plan(rooms, workload.shares(), seed=5)
    picked = [rooms[next(plan)[0]].traffic for _ in range(4000)]
    assert 0.45 < picked.count("direct") / 4000 < 0.55
    assert 0.11 < picked.count("big") / 4000 < 0.19


def test_a_worker_whose_share_is_off_the_mean_by_more_than_a_quarter_is_flagged() -> None:
    names = {1: "worker-1", 2: "worker-2"}
    even = worker_shares(Window(10.0, {"workers": {1: 1.1, 2: 0.9}}), names, churn=False)
    assert even["workers_uneven"] is False
    idle_one = worker_shares(Window(10.0, {"workers": {1: 2.0, 2: 0.05}}), names, churn=False)
    assert idle_one["workers_uneven"] is True
    assert [d["name"] for d in idle_one["workers_detail"]] == ["worker-1", "worker-2"]


def _row(**ms: float) -> dict[str, Any]:
    per = {"servers": 2.0, "workers": 1.0, "rabbitmq": 0.5, "postgres": 0.4, "redis": 0.1}
    per.update(ms)
    per["cluster"] = sum(per.values())
    detail = [{"share": 1.0}, {"share": 0.0}]
    return {"nodes": 2, "workers": 2, "workload": "mixed", "ms_per_message": per,
            "workers_detail": detail}  # fmt: skip


def test_capacity_is_cores_over_the_cost_capped_by_the_one_active_worker() -> None:
    model = scaling_report.capacity(_row())
    # 4 ms per message: 2 cores give 500 msg/s; the one active worker (1 ms) caps at 1000.
    assert model["cores"]["2"] == {"msg_per_s": 500, "limit": "cores"}
    assert model["cores"]["16"] == {"msg_per_s": 1000, "limit": "workers"}
    assert model["active_workers"] == 1 and model["largest_role"] == "servers"


def test_the_meter_counts_a_process_born_inside_the_window_until_its_last_sample() -> None:
    pids: list[int] = []
    meter = RoleMeter(lambda: {"workers": pids})
    meter.start()
    work = "import sys; sum(range(10_000_000)); print('done', flush=True); sys.stdin.read()"
    busy = subprocess.Popen(
        [sys.executable, "-c", work], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    pids.append(busy.pid)
    assert busy.stdout is not None and busy.stdout.readline() == "done\n"
    meter.sample()
    busy.communicate("")  # it exits before the window ends: its last sample stands
    window = meter.stop()
    # Counted from zero (born inside the window): its start-up and its loop.
    assert window.cpu["workers"][busy.pid] > 0
    assert window.cpu["generator"][os.getpid()] >= 0


def test_our_processes_are_read_in_detail_on_the_schedulers_clock() -> None:
    pids: list[int] = []
    meter = RoleMeter(lambda: {"servers": pids, "redis": []})
    work = "import sys, time; sum(range(5_000_000)); time.sleep(0.05); print('done', flush=True)"
    busy = subprocess.Popen([sys.executable, "-c", work + "; sys.stdin.read()"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    pids.append(busy.pid)
    meter.start()
    assert busy.stdout is not None and busy.stdout.readline() == "done\n"
    window = meter.stop()
    busy.communicate("")
    detail = window.role_detail("servers")
    # The loop ran on a CPU, then the process slept (time.sleep, then reading stdin).
    assert detail.run > 0 and detail.sleeps >= 1
    assert "redis" not in window.detail  # services are read coarse only
