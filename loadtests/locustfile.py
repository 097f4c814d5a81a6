"""Locust harness: users who register, log in, join a shared pool of rooms, hold a socket.io
websocket and post messages over REST; the fan-out is measured end to end, per node.

Headless, bounded (from the repository root):

    .venv/bin/locust -f loadtests/locustfile.py --headless -u 50 -r 10 -t 60s \
        --host http://127.0.0.1:8000

Several nodes: ``--host http://127.0.0.1:8000,http://127.0.0.1:8001`` (or the env var
CHAT_LOCUST_HOSTS): user i posts to node i and listens on node i+1, so messages cross
nodes. Load shapes: add ``,loadtests/shape_step.py`` (step up to the knee) or
``,loadtests/shape_soak.py`` to ``-f``. Web UI: the same command without
--headless/-u/-r/-t, then http://localhost:8089. See docs/qa.md.

Rows: ``socketio / message:new delivery`` is one request per delivery that arrived in time,
its response time post-to-receipt (the send time travels in the client_msg_id); the
missing (none within CHAT_LOCUST_LOSS_TIMEOUT s), duplicated and out-of-order ones are
rows of their own. At the end of a run (after every Locust process has drained and sent its
final numbers), each missing delivery is reconciled with the room's history (late or
lost), the limits are checked (``run_verdict.py``), a report is written to
CHAT_LOCUST_REPORT (default var/locust-report) and the exit code is 0 only if they held.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import gevent
import socketio
from locust import between, events, task
from locust.argument_parser import LocustArgumentParser
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner

# Locust puts this file's folder on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.delivery_tally import Tally
from loadtests.locust_report import FinalReport, StatsRow, text, write
from loadtests.locust_support import book, nodes, pool, reconcile, run
from loadtests.reconcile import Reconciliation
from loadtests.run_verdict import Limits, breaches, knee

PASSWORD = "correct horse battery"
FINISH = "chat:finish"  # master -> workers: stop posting, drain, reconcile, report
RUN = uuid.uuid4().hex[:8]  # usernames stay unique across runs against the same server
log = logging.getLogger("chat.locust")
_sweeper: gevent.Greenlet | None = None
_sampler: gevent.Greenlet | None = None


@events.init_command_line_parser.add_listener
def _arguments(parser: LocustArgumentParser) -> None:
    d = Limits()
    group = parser.add_argument_group("chat", "limits of the chat load test (docs/qa.md)")
    for flag, env, default, kind, what in (
        ("--chat-loss-budget", "LOSS_BUDGET", d.loss_budget, int, "faulty deliveries allowed"),
        ("--chat-p95-ms", "P95_MS", d.p95_ms, float, "delivery p95 limit, ms (0: none)"),
        ("--chat-p99-ms", "P99_MS", d.p99_ms, float, "delivery p99 limit, ms (0: none)"),
        ("--chat-max-error-rate", "MAX_ERROR_RATE", d.max_error_rate, float, "HTTP failures"),
    ):
        group.add_argument(
            flag, type=kind, default=default, env_var=f"CHAT_LOCUST_{env}", help=what
        )


def _finish_here(environment: Environment) -> None:
    """This process's end of a run: stop posting, drain, reconcile (once per run; a second
    caller, e.g. Locust's own stop arriving meanwhile, waits for the first)."""
    if book.final is not None:
        return
    if book.finishing:
        deadline = time.monotonic() + book.timeout + 60
        while book.final is None and time.monotonic() < deadline:
            gevent.sleep(0.1)
        return
    book.finishing = True
    book.drain()
    recon = reconcile(book, pool, nodes(environment.host))
    # What this process alone counted, so a run can be checked against the master's sums.
    directory = Path(os.environ.get("CHAT_LOCUST_REPORT", "var/locust-report"))
    directory.mkdir(parents=True, exist_ok=True)
    own = {"tally": book.tally.to_dict(), "reconciliation": recon.to_dict()}
    (directory / f"process-{os.getpid()}.json").write_text(json.dumps(own))
    book.final = recon


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    def report(name: str, ms: float, length: int, exc: BaseException | None) -> None:
        environment.events.request.fire(
            request_type="socketio",
            name=name,
            response_time=ms,
            response_length=length,
            exception=exc,
            context={},
        )

    book.report = report
    runner = environment.runner
    if isinstance(runner, WorkerRunner):

        def on_finish(environment: Environment, msg: Any, **_: Any) -> None:
            _finish_here(environment)

        runner.register_message(FINISH, on_finish, concurrent=True)


@events.report_to_master.add_listener
def _on_report_to_master(client_id: str, data: dict[str, Any]) -> None:
    # Rides in the same message as Locust's own stats: when the master sees "final", the
    # stats of this message already hold every delivery this worker counted.
    chat: dict[str, Any] = {"run": book.run_id, "tally": book.tally.to_dict()}
    if book.final is not None:
        chat["final"] = book.final.to_dict()
    data["chat"] = chat


@events.worker_report.add_listener
def _on_worker_report(client_id: str, data: dict[str, Any]) -> None:
    chat = data.get("chat")
    if chat is None or chat.get("run") != run.run_id:
        return  # a report sent before the worker heard of this run: the last run's numbers
    run.tallies[client_id] = Tally.from_dict(chat["tally"])
    if "final" in chat:
        run.reconciliations[client_id] = Reconciliation.from_dict(chat["final"])
        run.final.add(client_id)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    global _sweeper, _sampler
    book.reset()
    run.reset()
    runner = environment.runner
    options = environment.parsed_options
    if isinstance(runner, MasterRunner) and options is not None:
        # Custom options travel to the workers with the spawn message of this run.
        options.chat_run = run.run_id = uuid.uuid4().hex[:8]
    book.run_id = getattr(options, "chat_run", "")
    if not isinstance(runner, MasterRunner):
        run.tallies["local"] = book.tally  # a lone process: its own book is the total

    if not isinstance(runner, MasterRunner) and _sweeper is None:

        def sweep_forever() -> None:
            while True:
                gevent.sleep(1.0)
                book.sweep()

        _sweeper = gevent.spawn(sweep_forever)

    if isinstance(runner, WorkerRunner):
        return
    shape = environment.shape_class
    if (shape is None or getattr(shape, "sampled", False)) and _sampler is None:

        def sample_forever() -> None:
            while True:
                gevent.sleep(run.window_seconds)
                if run.running:
                    run.close_window(environment, f"t+{time.monotonic() - run.started:.0f}s")

        _sampler = gevent.spawn(sample_forever)
    run.running = True
    run.mark(environment)


@events.test_stopping.add_listener
def _on_test_stopping(environment: Environment, **_: Any) -> None:
    # Users (and their sockets) are stopped right after this returns: let the messages
    # already posted arrive first, so the end of a run does not read as losses, and (on a
    # master) wait for every worker's final numbers: Locust's own quit waits 0.5 s.
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        _finish_here(environment)
        if not isinstance(runner, WorkerRunner):
            run.reconciliations["local"] = book.final or Reconciliation()
        return
    waiting = {c.id for c in runner.clients.all if c.state != STATE_MISSING}
    runner.send_message(FINISH)
    deadline = time.monotonic() + book.timeout + 60
    while waiting - run.final and time.monotonic() < deadline:
        gevent.sleep(0.1)
    run.unreported = waiting - run.final
    if run.unreported:
        log.error("no final report from worker(s) %s: their counts are missing", run.unreported)


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner) or runner is None or not run.running:
        return
    run.running = False
    shape = environment.shape_class
    if shape is None or getattr(shape, "sampled", False):
        run.close_window(environment, f"t+{time.monotonic() - run.started:.0f}s", final=True)
    lim = Limits.from_options(environment.parsed_options)
    tally = run.tally()
    found = breaches(tally.total(), *run.http_counts(environment), lim)
    if run.unreported:
        found.append(f"{len(run.unreported)} Locust worker(s) sent no final report")
    if runner.exceptions:
        found.append(f"{sum(e['count'] for e in runner.exceptions.values())} user exceptions")
    recon = run.reconciliation()
    rows = [
        StatsRow(
            kind=e.method or "",
            name=e.name,
            requests=e.num_requests,
            failures=e.num_failures,
            p50=e.get_response_time_percentile(0.5) if e.num_requests else None,
            p95=e.get_response_time_percentile(0.95) if e.num_requests else None,
            p99=e.get_response_time_percentile(0.99) if e.num_requests else None,
            max=e.max_response_time if e.num_requests else None,
        )
        for e in sorted(runner.stats.entries.values(), key=lambda e: (e.method or "", e.name))
    ]
    for row in rows:
        if row.kind == "socketio" and row.failures == row.requests:
            row.p50 = row.p95 = row.p99 = row.max = None  # counted rows: no latency
    report = FinalReport(
        rows=rows,
        tally=tally,
        reconciliation=recon,
        limits=lim,
        breaches=found,
        seconds=time.monotonic() - run.started,
        windows=list(run.windows),
        # The knee only means something when the load rose step by step.
        knee=knee(run.windows, lim) if shape and not getattr(shape, "sampled", True) else None,
        processes=max(1, len(run.tallies)),
    )
    print(text(report), flush=True)
    directory = Path(os.environ.get("CHAT_LOCUST_REPORT", "var/locust-report"))
    write(report, directory)
    print(f"report: {directory}/report.html (and final.csv, nodes.csv, ...)", flush=True)
    environment.process_exit_code = 0 if report.passed else 1


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    # On SIGTERM Locust decides the exit code before it stops the runner: stop it first, so
    # the drain, the workers' final reports and the verdict come before the exit code.
    runner = environment.runner
    if runner is not None and not isinstance(runner, WorkerRunner) and run.running:
        runner.stop()


class ChatUser(FastHttpUser):
    """A chat member: its own account, a room of the pool, a websocket, messages to post."""

    wait_time = between(0.5, 2.0)

    def __init__(self, environment: Environment) -> None:
        self.number = pool.next_user()
        targets = nodes(environment.host or self.host)
        # REST and socket on different nodes whenever there are several.
        self.node = targets[self.number % len(targets)]  # the node this user posts to
        self.host = self.node
        self.socket_url = targets[(self.number + 1) % len(targets)]
        super().__init__(environment)
        self.token = ""
        self.room: Any = None
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("message:new", lambda message: book.received(self.number, message))

    def on_start(self) -> None:
        # Each Locust process numbers its users from 0 (--processes forks after import).
        username = f"lc{RUN}{os.getpid()}_{self.number}"
        credentials = {"username": username, "password": PASSWORD}
        for _ in range(10):
            # A node hashes registrations a few at a time and refuses a burst beyond its
            # queue (429 + Retry-After): a spawn wave waits its turn, as a client should.
            with self.client.post(
                "/api/v1/auth/register",
                json=credentials,
                name="/auth/register",
                catch_response=True,
            ) as r:
                if r.status_code != 429:
                    break
                r.success()
                retry_after = float(r.headers.get("Retry-After", "1"))
            gevent.sleep(retry_after)
        with self.client.post(
            "/api/v1/auth/login", json=credentials, name="/auth/login", catch_response=True
        ) as r:
            if r.status_code != 200:
                r.failure(f"login answered {r.status_code}")
                raise StopUser()  # nothing else can work without a token
            body = r.json()
        self.token, user_id = body["access_token"], body["user"]["id"]
        # Listen before joining: a member added to a room gets its events on sockets
        # already connected, so no message of the room can slip between join and listen.
        self.sio.connect(
            self.socket_url,
            auth={"token": self.token},
            transports=["websocket"],
            wait_timeout=10,
        )
        book.node_of[self.number] = self.socket_url
        room, creator = pool.room_of(self.number)
        if creator:
            with self.client.post(
                "/api/v1/rooms",
                json={"name": f"locust {room.number}", "member_ids": []},
                headers=self.auth,
                name="/rooms",
                catch_response=True,
            ) as r:
                if r.status_code != 201:
                    r.failure(f"create room answered {r.status_code}")
                    room.created.set()
                    return
                room.room_id, room.owner_token = r.json()["room"]["id"], self.token
                room.owner_node = self.node
            room.created.set()
        else:
            room.created.wait(30)
            if room.room_id is None:
                return
            self.client.post(
                f"/api/v1/rooms/{room.room_id}/members",
                json={"user_id": user_id},
                headers={"Authorization": f"Bearer {room.owner_token}"},
                name="/rooms/{id}/members",
            )
        room.members.add(self.number)
        self.room = room

    def on_stop(self) -> None:
        book.forget(self.number)
        if self.room is not None:
            self.room.members.discard(self.number)
        if self.sio.connected:
            self.sio.disconnect()

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @task(10)
    def post_message(self) -> None:
        if self.room is None or not book.sending:
            return
        cmid = book.new_cmid(self.number)
        book.expect(cmid, self.room.room_id, self.node, self.room.members)
        with self.client.post(
            f"/api/v1/rooms/{self.room.room_id}/messages",
            json={"body": f"locust {cmid}", "client_msg_id": cmid},
            headers=self.auth,
            name="/rooms/{id}/messages",
            catch_response=True,
        ) as r:
            accepted = r.status_code == 202
            book.posted(self.node, accepted)
            if not accepted:
                book.cancel(cmid)
                r.failure(f"send answered {r.status_code}")

    @task(1)
    def read_history(self) -> None:
        if self.room is None or not book.sending:
            return
        self.client.get(
            f"/api/v1/rooms/{self.room.room_id}/messages?limit=20",
            headers=self.auth,
            name="/rooms/{id}/messages [history]",
        )
