"""The end of a Locust run: the verdict, the delivery rows, the late/lost table, the
per-node view, the steps and the knee, as text on stdout and as files written once, after
every process's final numbers are in (``final.csv``, ``nodes.csv``, ``routes.csv``,
``reconciliation.csv``, ``windows.csv``, ``summary.json``, ``report.html``, ``load.png``).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests.delivery_tally import Route, Tally, percentile
from loadtests.reconcile import Reconciliation, table
from loadtests.run_verdict import Knee, Limits, Window, faulty


@dataclass
class StatsRow:
    """One of Locust's rows, HTTP or socketio; latencies None where they mean nothing."""

    kind: str
    name: str
    requests: int
    failures: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None


@dataclass
class FinalReport:
    rows: list[StatsRow]
    tally: Tally
    reconciliation: Reconciliation
    limits: Limits
    breaches: list[str]
    seconds: float
    windows: list[Window] = field(default_factory=list)
    knee: Knee | None = None
    processes: int = 1

    @property
    def passed(self) -> bool:
        return not self.breaches


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _route_figures(route: Route, seconds: float) -> dict[str, Any]:
    c = route.counts
    return {
        "delivered": c["delivered"],
        "delivered_per_s": round(c["delivered"] / seconds, 2) if seconds > 0 else 0,
        "p50_ms": percentile(route.latency, 0.5),
        "p95_ms": percentile(route.latency, 0.95),
        "p99_ms": percentile(route.latency, 0.99),
        "max_ms": max(route.latency) if route.latency else None,
        "missing": c["missing"],
        "arrived_late": c["arrived_late"],
        "duplicated": c["duplicated"],
        "out_of_order": c["out_of_order"],
    }


def final_rows(report: FinalReport) -> list[dict[str, Any]]:
    """Locust's rows, then an HTTP total and a deliveries total kept apart (Locust's
    ``Aggregated`` adds sockets to HTTP calls)."""
    out: list[dict[str, Any]] = []
    for r in report.rows:
        out.append(
            {
                "type": r.kind,
                "name": r.name,
                "count": r.requests,
                "failures": r.failures,
                "p50_ms": _ms(r.p50),
                "p95_ms": _ms(r.p95),
                "p99_ms": _ms(r.p99),
                "max_ms": _ms(None if r.max is None else round(r.max)),
            }
        )
    http = [r for r in report.rows if r.kind != "socketio"]
    out.append(
        {
            "type": "HTTP",
            "name": "total",
            "count": sum(r.requests for r in http),
            "failures": sum(r.failures for r in http),
            "p50_ms": "",
            "p95_ms": "",
            "p99_ms": "",
            "max_ms": "",
        }
    )
    total = report.tally.total()
    f = _route_figures(total, report.seconds)
    out.append(
        {
            "type": "socketio",
            "name": "deliveries total",
            "count": f["delivered"],
            "failures": faulty(total),
            "p50_ms": _ms(f["p50_ms"]),
            "p95_ms": _ms(f["p95_ms"]),
            "p99_ms": _ms(f["p99_ms"]),
            "max_ms": _ms(f["max_ms"]),
        }
    )
    return out


def node_rows(report: FinalReport) -> list[dict[str, Any]]:
    """Per node: the message POSTs it answered, the deliveries at its sockets."""
    by_node = report.tally.by_deliver_node()
    recon = report.reconciliation.by_node
    out = []
    for node in report.tally.nodes():
        posts = report.tally.posts.get(node)
        row: dict[str, Any] = {
            "node": node,
            "posts": posts.sent if posts else 0,
            "accepted": posts.accepted if posts else 0,
            "post_errors": posts.errors if posts else 0,
        }
        row |= _route_figures(by_node.get(node, Route()), report.seconds)
        counts = recon.get(node, Counter())
        row["late"], row["lost"] = counts["late"], counts["lost"]
        out.append(row)
    return out


def route_rows(report: FinalReport) -> list[dict[str, Any]]:
    """Per (node posted to, node delivering): who carried each message across."""
    out = []
    for key in sorted(report.tally.routes):
        post, deliver = key.split(" > ", 1)
        f = _route_figures(report.tally.routes[key], report.seconds)
        out.append({"posted_to": post, "delivered_by": deliver} | f)
    return out


def window_rows(report: FinalReport) -> list[dict[str, Any]]:
    out = []
    for w in report.windows:
        total = w.tally.total()
        out.append(
            {
                "window": w.label,
                "users": w.users,
                "seconds": round(w.seconds, 1),
                "delivered_per_s": round(w.delivered_per_s(), 2),
                "p95_ms": percentile(total.latency, 0.95),
                "p99_ms": percentile(total.latency, 0.99),
                "faulty": faulty(total),
                "http_calls": w.http_calls,
                "http_failures": w.http_failures,
                "breaches": "; ".join(w.cluster_breaches(report.limits)),
            }
        )
    return out


def _table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if not rows:
        return "(none)"
    columns = columns or list(rows[0])
    cells = [[str("" if r.get(c) is None else r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def knee_text(report: FinalReport) -> str:
    if report.knee is None:
        return ""
    k = report.knee

    def load(w: Window | None, route: Route | None = None) -> str:
        if w is None:
            return "none (the first step already broke a limit)"
        return f"{w.users} users, {w.delivered_per_s(route):.1f} delivered/s ({w.label})"

    lines = [f"highest load that met the limits, cluster: {load(k.cluster)}"]
    for node, w in k.nodes.items():
        route = w.tally.by_deliver_node().get(node) if w else None
        lines.append(f"  node {node}: {load(w, route)}")
    if k.broken_at is not None:
        lines.append(
            f"broken at {k.broken_at.users} users ({k.broken_at.label}): "
            + "; ".join(k.broken_at.cluster_breaches(report.limits))
        )
    else:
        lines.append("no step broke a limit: raise the top of the step shape to find the knee")
    return "\n".join(lines)


NODE_COLUMNS = [
    *("node", "posts", "post_errors", "delivered", "delivered_per_s", "p95_ms", "p99_ms"),
    *("missing", "late", "lost", "duplicated", "out_of_order"),
]


def text(report: FinalReport) -> str:
    verdict = "PASS" if report.passed else "FAIL"
    parts = [
        f"=== chat load test: {verdict} ({report.processes} Locust process(es), "
        f"{report.seconds:.1f} s) ===",
        *(f"  limit broken: {b}" for b in report.breaches),
        "",
        _table(final_rows(report)),
        "",
        "missing deliveries, reconciled with the rooms' history:",
        table(report.reconciliation),
        "",
        "per node (posts it answered; deliveries at its sockets):",
        _table(
            node_rows(report),
            NODE_COLUMNS,
        ),
    ]
    if report.windows:
        parts += ["", "load windows:", _table(window_rows(report))]
    if report.knee is not None:
        parts += ["", knee_text(report)]
    return "\n".join(parts)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def plot(report: FinalReport) -> bytes | None:
    """Users against delivered messages/s and p99, one point per window; None without
    windows."""
    if not report.windows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = window_rows(report)
    users = [r["users"] for r in rows]
    fig, left = plt.subplots(figsize=(7, 4))
    left.plot(users, [r["delivered_per_s"] for r in rows], "o-", color="tab:blue")
    left.set_xlabel("users")
    left.set_ylabel("delivered messages/s", color="tab:blue")
    right = left.twinx()
    right.plot(users, [r["p99_ms"] or 0 for r in rows], "s--", color="tab:red")
    right.set_ylabel("delivery p99 (ms)", color="tab:red")
    if report.limits.p99_ms > 0:
        right.axhline(report.limits.p99_ms, color="tab:red", linewidth=0.5)
    left.set_title("chat load test: throughput and p99 against users")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _html_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(str('' if v is None else v))}</td>" for v in r.values())
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def write(report: FinalReport, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    _write_csv(directory / "final.csv", final_rows(report))
    _write_csv(directory / "nodes.csv", node_rows(report))
    _write_csv(directory / "routes.csv", route_rows(report))
    recon = [
        {"delivering_node": n} | {k: c.get(k, 0) for k in ("late", "lost", "unchecked")}
        for n, c in sorted(report.reconciliation.by_node.items())
    ]
    _write_csv(directory / "reconciliation.csv", recon)
    _write_csv(directory / "windows.csv", window_rows(report))
    png = plot(report)
    if png is not None:
        (directory / "load.png").write_bytes(png)
    summary = {
        "passed": report.passed,
        "breaches": report.breaches,
        "processes": report.processes,
        "seconds": report.seconds,
        "limits": vars(report.limits),
        "tally": report.tally.to_dict(),
        "reconciliation": report.reconciliation.to_dict(),
        "nodes": node_rows(report),
        "windows": window_rows(report),
        "knee": knee_text(report),
    }
    (directory / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    image = (
        f'<img alt="users against delivered/s and p99" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        if png
        else ""
    )
    verdict = "PASS" if report.passed else "FAIL"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>chat load test</title>
<style>body{{font-family:sans-serif}} td,th{{border:1px solid #ccc;padding:2px 6px}}
table{{border-collapse:collapse}}</style></head><body>
<h1>chat load test: {verdict}</h1>
<ul>{"".join(f"<li>{html.escape(b)}</li>" for b in report.breaches)}</ul>
<h2>Rows</h2>{_html_table(final_rows(report))}
<h2>Missing deliveries, late or lost</h2>{_html_table(recon)}
<h2>Per node</h2>{_html_table(node_rows(report))}
<h2>Routes (posted to, delivered by)</h2>{_html_table(route_rows(report))}
<h2>Load windows</h2>{_html_table(window_rows(report))}
<pre>{html.escape(knee_text(report))}</pre>{image}
</body></html>"""
    (directory / "report.html").write_text(page)
