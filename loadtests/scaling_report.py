"""What the scaling mode prints and plots: CPU per message of each role for each (nodes,
workers), each worker's share, the node-scaling goal, and a capacity model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadtests.report import text_table
from loadtests.scaling import CLUSTER_ROLES, ROLES
from loadtests.workloads import DIRECT_CROSS, MIXED

# Issue 22: server CPU per message at 8 nodes at most 1.15x that at 2 (direct-cross).
NODE_GOAL = 1.15
# Roles that one process serves and that cannot use more than one core: a ceiling on
# messages per second whatever the machine. Servers and workers are several processes.
SINGLE_THREADED = ("redis",)
CORES = (2, 4, 8, 16)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _label(row: dict[str, Any]) -> str:
    return f"{row['workload']}{' churn' if row['churn'] else ''}"


def _clean(row: dict[str, Any]) -> bool:
    return not (row["lost"] or row["duplicated"] or row["order_violations"])


def node_goal(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Server CPU per message at the most nodes against 2 nodes, direct-cross, one worker."""
    by_nodes = {
        r["nodes"]: r
        for r in rows
        if r["workload"] == DIRECT_CROSS and r["workers"] == 1 and not r["churn"]
    }
    if 2 not in by_nodes or max(by_nodes) <= 2:
        return None
    most = max(by_nodes)
    two, many = (
        by_nodes[2]["ms_per_message"]["servers"],
        by_nodes[most]["ms_per_message"]["servers"],
    )
    if not two or many is None:
        return None
    ratio = round(many / two, 2)
    return {
        "goal": f"server CPU per message at 8 nodes <= {NODE_GOAL}x that at 2 (direct-cross)",
        "nodes": most,
        "measured": f"{many:.2f} vs {two:.2f} ms at {most} vs 2 nodes: {ratio:.2f}x"
        + ("" if most == 8 else f" (8 nodes not measured; {most} is the most)"),
        "ratio": ratio,
        "met": ratio <= NODE_GOAL if most == 8 else None,
    }


def capacity(row: dict[str, Any]) -> dict[str, Any]:
    """Messages per second of a machine of N cores running every role, from one phase's
    CPU per message (net of idle). Model: capacity = N * 1000 / (sum of the roles' ms per
    message), each role's cores in proportion to its share; bounded by the roles that cannot
    spread: the active workers (a worker is one Python process, at most one core, and only
    the workers with a real share work: today one), each server node (one process each),
    Redis (one thread). Linear and at 100% CPU: keep ~30% headroom in practice."""
    ms = row["ms_per_message"]
    total = ms["cluster"]
    shares = {r: (ms[r] or 0.0) / total for r in CLUSTER_ROLES} if total else {}
    active = [
        d for d in row.get("workers_detail", []) if d["share"] is not None and d["share"] >= 0.1
    ]
    ceilings: dict[str, float] = {}
    if ms["workers"]:
        ceilings["workers"] = max(len(active), 1) * 1000 / ms["workers"]
    if ms["servers"]:
        ceilings["servers"] = row["nodes"] * 1000 / ms["servers"]
    for role in SINGLE_THREADED:
        if ms[role]:
            ceilings[role] = 1000 / ms[role]
    per_cores: dict[str, dict[str, Any]] = {}
    for cores in CORES:
        bound, limit = (cores * 1000 / total, "cores") if total else (0.0, "-")
        for role, ceiling in ceilings.items():
            if ceiling < bound:
                bound, limit = ceiling, role
        per_cores[str(cores)] = {"msg_per_s": round(bound), "limit": limit}
    largest = max(shares, key=lambda r: shares[r]) if shares else None
    return {
        "nodes": row["nodes"],
        "workers": row["workers"],
        "workload": row["workload"],
        "cluster_ms_per_message": total,
        "shares": {r: round(s, 3) for r, s in shares.items()},
        "active_workers": len(active),
        "ceilings_msg_per_s": {r: round(c) for r, c in ceilings.items()},
        "cores": per_cores,
        "largest_role": largest,
    }


def capacities(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        capacity(r)
        for r in rows
        if r["workload"] == MIXED and not r["churn"] and r["ms_per_message"]["cluster"]
    ]


def _add_first(model: dict[str, Any]) -> str:
    """The role to give more of first: the ceiling that binds on the biggest machine
    listed, else the role with the largest share of the CPU."""
    limit = model["cores"][str(CORES[-1])]["limit"]
    if limit == "workers":
        return "workers (only if they split the partitions: more idle ones add nothing)"
    if limit == "servers":
        return "server nodes"
    if limit != "cores":
        return f"{limit} (one thread: shard it)"
    return f"cores for {model['largest_role']} (largest share)"


def _detail_cells(detail: dict[str, float] | None) -> list[str]:
    if detail is None:
        return ["-"] * 5
    return [
        _ms(detail["run_ms"]),
        _ms(detail["user_ms"]),
        _ms(detail["system_ms"]),
        f"{detail['sleeps']:.1f}",
        f"{detail['preempted']:.2f}",
    ]


def _idle_cell(idle: dict[str, float] | None) -> str:
    if idle is None:
        return "-"
    return f"{idle['run_percent_per_process']:.2f}%, {idle['sleeps_per_s_per_process']:.0f}/s"


def _worker(detail: dict[str, Any]) -> str:
    share = "-" if detail["share"] is None else f"{detail['share'] * 100:.0f}%"
    messages = detail.get("message_share")
    stored = "" if messages is None else f", msgs {messages * 100:.0f}%"
    return f"{detail['name']} {detail['cpu_percent']:.0f}% ({share}{stored})"


def render(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["settings"]
    rows = result["results"]
    parts = [
        f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['platform']}",
        f"cpu probe (larger = slower machine): {m['cpu_probe_ms']['start']} ms at the start, "
        f"{m['cpu_probe_ms']['end']} ms at the end; commit {m['commit']}",
        "settings: " + ", ".join(f"{k}={v}" for k, v in s.items()),
        "",
        "CPU per accepted message, ms, by role (net of an idle baseline of the same processes;"
        " cluster = every role but the generator); busy% = the whole machine",
    ]
    table = [
        [
            str(r["nodes"]),
            str(r["workers"]),
            _label(r),
            f"{r['accepted_per_s']:.0f}",
            _ms(r["latency_ms"]["p50"]),
            _ms(r["latency_ms"]["p99"]),
            f"{r['lost']}/{r['duplicated']}/{r['order_violations']}",
            *(_ms(r["ms_per_message"][role]) for role in (*CLUSTER_ROLES, "cluster", ROLES[-1])),
            _pct(r["host_busy_percent"]),
        ]
        for r in rows
    ]
    headers = ["nodes", "workers", "workload", "acc/s", "p50", "p99", "lost/dup/order"]
    headers += [*CLUSTER_ROLES, "cluster", "generator", "busy%"]
    if table:
        parts.append(text_table(headers, table, left=3))
    detailed = [
        [
            str(r["nodes"]),
            str(r["workers"]),
            _label(r),
            f"{r['accepted_per_s']:.0f}",
            _ms(r["ms_per_message"]["servers"]),
            *_detail_cells(r.get("detail_per_message", {}).get("servers")),
            _idle_cell((r.get("baseline_detail") or {}).get("servers")),
        ]
        for r in rows
        if (r.get("detail_per_message") or {}).get("servers")
    ]
    if detailed:
        parts += [
            "",
            "servers in detail, per message, net of idle: ticks = utime+stime as above; run ="
            " time on a CPU by the scheduler's exact clock; user, sys (ticks); sleeps = times a"
            " thread blocked (the event loop waiting for I/O), preempted = taken off a CPU;"
            " idle = each node's baseline (run % of a core, sleeps/s)",
            text_table(
                [
                    "nodes",
                    "workers",
                    "workload",
                    "acc/s",
                    "ticks ms",
                    "run ms",
                    "user ms",
                    "sys ms",
                    "sleeps",
                    "preempted",
                    "idle per node",
                ],
                detailed,
                left=3,
            ),
        ]
    shares = [
        [
            str(r["nodes"]),
            str(r["workers"]),
            _label(r),
            ", ".join(_worker(d) for d in r["workers_detail"]),
            {None: "-", True: "UNEVEN", False: "even"}[r["workers_uneven"]],
            "-" if r.get("workers_spread") is None else f"{r['workers_spread'] * 100:.0f}%",
        ]
        for r in rows
    ]
    if shares:
        parts += [
            "",
            "each worker: CPU (% of a core), its share of the workers' CPU and of the messages "
            "stored; uneven = one CPU share off the mean by more than 25%; spread = (largest - "
            "smallest) / largest CPU share",
            text_table(
                ["nodes", "workers", "workload", "workers", "split", "spread"], shares, left=5
            ),
        ]
    goal = result.get("goal")
    if goal is not None:
        verdict = {None: "not judged", True: "yes", False: "no"}[goal["met"]]
        parts += ["", f"goal: {goal['goal']}: {goal['measured']}; met: {verdict}"]
    models = result.get("capacity", [])
    if models:
        parts += [
            "",
            "capacity model (mixed workload): msg/s = cores * 1000 / cluster ms per message, "
            "capped by what cannot spread (active workers, each server node, Redis: one core "
            "each); at 100% CPU, linear; the bound named",
            text_table(
                ["nodes", "workers", "cluster ms", *(f"{c} cores" for c in CORES), "add first"],
                [
                    [
                        str(c["nodes"]),
                        str(c["workers"]),
                        _ms(c["cluster_ms_per_message"]),
                        *(
                            f"{c['cores'][str(n)]['msg_per_s']} ({c['cores'][str(n)]['limit']})"
                            for n in CORES
                        ),
                        _add_first(c),
                    ]
                    for c in models
                ],
                left=0,
            ),
        ]
    unclean = [r for r in rows if not _clean(r)]
    parts += [
        "",
        "delivery: "
        + (
            "every phase delivered every message once, in order"
            if not unclean
            else "; ".join(
                f"{r['nodes']}n {r['workers']}w {_label(r)}: lost {r['lost']}, dup "
                f"{r['duplicated']}, order {r['order_violations']}"
                + (
                    " (dup: the killed worker's unacknowledged batch, emitted again by the"
                    " next worker by design; clients dedupe by id)"
                    if r["churn"]
                    else ""
                )
                for r in unclean
            )
        ),
    ]
    return "\n".join(parts)


def plot(result: dict[str, Any], path: Path) -> bool:
    """CPU per message of each role against node count (one worker; mixed solid,
    direct-cross dashed) and against worker count. False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [r for r in result["results"] if not r["churn"]]
    worker_nodes = result["settings"]["worker_nodes"]
    fig, (by_nodes, by_workers) = plt.subplots(1, 2, figsize=(13, 5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, role in enumerate((*CLUSTER_ROLES, "cluster")):
        colour = colours[i % len(colours)]
        for workload, style in ((MIXED, "-"), (DIRECT_CROSS, "--")):
            line = sorted(
                (r["nodes"], r["ms_per_message"][role])
                for r in rows
                if r["workers"] == 1 and r["workload"] == workload
                and r["ms_per_message"][role] is not None
            )  # fmt: skip
            if line:
                by_nodes.plot(
                    [x for x, _ in line], [y for _, y in line], style, marker="o",
                    color=colour, label=f"{role} ({workload})",
                )  # fmt: skip
        line = sorted(
            (r["workers"], r["ms_per_message"][role])
            for r in rows
            if r["nodes"] == worker_nodes and r["workload"] == MIXED
            and r["ms_per_message"][role] is not None
        )  # fmt: skip
        if line:
            by_workers.plot(
                [x for x, _ in line], [y for _, y in line], "-", marker="o", color=colour,
                label=role,
            )  # fmt: skip
    rate = result["settings"]["rate"]
    by_nodes.set_title(f"by server nodes (1 worker), {rate:g} msg/s")
    by_nodes.set_xlabel("server nodes")
    by_workers.set_title(f"by workers ({worker_nodes} nodes, mixed), {rate:g} msg/s")
    by_workers.set_xlabel("workers")
    for axes, key in ((by_nodes, "nodes"), (by_workers, "workers")):
        axes.set_xticks(sorted(set(result["settings"][key])))
        axes.set_ylabel("CPU per message, ms")
        axes.set_ylim(0, axes.get_ylim()[1] * 1.4)  # room for the legend above the lines
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, loc="upper left", ncol=2, framealpha=0.6)
    fig.suptitle(f"CPU per message by role, commit {result['machine']['commit']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    """Print a scaling JSON's tables again, and redraw its plot beside it (.png)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m loadtests.scaling_report")
    parser.add_argument("json", type=Path, help="a report of `bench --scaling`")
    args = parser.parse_args(argv)
    result = json.loads(args.json.read_text())
    print(render(result))
    plot(result, args.json.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
