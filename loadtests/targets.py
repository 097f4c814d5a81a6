"""The systems under test, started by the bench itself: embedded `chat serve`, the cluster
(2 servers + 1 worker on RabbitMQ, Redis and a fresh PostgreSQL database), the reference."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHAT = str(Path(sys.executable).with_name("chat"))
POSTGRES_ADMIN_DSN = os.environ.get(
    "BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    """VmRSS of a live process, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat (fields after the command name)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _env(extra: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without its CHAT_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def log_directory() -> Path:
    """Where the targets' logs go while they run: tmpfs when there is one.

    The servers write an access line per request. On one ext4 disk those appends held
    back RabbitMQ's fsyncs (data=ordered: a journal commit writes other files' appended
    data first): with three processes appending log lines, a lone broker's publish
    confirms went from p99 3 ms to 177 ms (max 296). Logs on tmpfs touch no journal; the
    databases and queues stay on disk, with their syncs. Moved to the work directory when
    the target stops.
    """
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="chat-bench-logs-", dir=base))


@dataclass
class Process:
    """A child process with its log in ``logdir`` (``workdir`` unless told otherwise)."""

    name: str
    args: list[str]
    workdir: Path
    env: dict[str, str]
    url: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    logdir: Path | None = None

    @property
    def log_path(self) -> Path:
        return (self.logdir or self.workdir) / f"{self.name}.log"

    def start(self) -> Process:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args, cwd=self.workdir, env=_env(self.env), stdout=log, stderr=subprocess.STDOUT
        )
        return self

    def log_tail(self, lines: int = 30) -> str:
        path = self.log_path
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_healthy(self, timeout: float = 60.0) -> None:
        assert self.proc is not None and self.url is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)  # a process that is starting offers nothing to wait on
        raise TimeoutError(f"{self.name} not healthy after {timeout}s:\n{self.log_tail()}")

    def wait_logged(self, text: str, timeout: float = 60.0) -> bool:
        """Wait until the log holds ``text`` (a worker has no health endpoint: its "consuming"
        line says its start-up is over); False if it did not within ``timeout``."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            if self.log_path.exists() and text in self.log_path.read_text(errors="replace"):
                return True
            time.sleep(0.1)  # as wait_healthy: a starting process offers nothing to wait on
        return False

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# One load generator is one client address: the per-address limit on auth calls would
# throttle the set-up (hundreds of register + login from 127.0.0.1) and measure nothing of
# the message path. Raised, not disabled, so the limiter's cost stays in every request.
# The per-user limits (sends, connects, sockets) stay as shipped; the bench respects them.
BENCH_ENV = {
    "CHAT_RATE_AUTH_PER_ADDRESS_PER_MINUTE": "1000000",
    "CHAT_RATE_AUTH_PER_ADDRESS_BURST": "100000",
    # Likewise the sessions waiting for their connect packet, per address: the bench
    # connects hundreds of sockets from 127.0.0.1 at once.
    "CHAT_SOCKET_PENDING_PER_ADDRESS": "100000",
}


def _serve(name: str, workdir: Path, env: dict[str, str]) -> Process:
    env = {**BENCH_ENV, **env}
    port = free_port()
    args = [CHAT, "serve", "--host", "127.0.0.1", "--port", str(port)]
    return Process(name, args, workdir, env, url=f"http://127.0.0.1:{port}")


@dataclass
class Target:
    """A running system under test: the URLs of its nodes and the processes to measure."""

    name: str
    processes: list[Process] = field(default_factory=list)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="chat-bench-")))
    logdir: Path = field(default_factory=log_directory)
    database: str | None = None
    prefix: str | None = None
    stopped: bool = False

    def add(self, process: Process) -> Process:
        """Start ``process`` as part of this target, its log in the target's log directory."""
        process.logdir = self.logdir
        self.processes.append(process.start())
        return process

    @property
    def urls(self) -> list[str]:
        return [p.url for p in self.processes if p.url is not None]

    def pids(self) -> list[int]:
        return [p.proc.pid for p in self.processes if p.proc is not None and p.proc.poll() is None]

    def rss_kib(self) -> int:
        return sum(rss_kib(pid) for pid in self.pids())

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids())

    def stop(self) -> None:
        """Stop every process and clean up after them; a second call does nothing."""
        if self.stopped:
            return
        self.stopped = True
        for process in reversed(self.processes):
            process.stop()
        for log in self.logdir.glob("*.log"):
            shutil.move(log, self.workdir / log.name)
        shutil.rmtree(self.logdir, ignore_errors=True)
        if self.database is not None:
            _drop_database(self.database)
        if self.prefix is not None:
            _delete_queues(self.prefix)


def start_embedded() -> Target:
    """`chat serve` with no configuration, in an empty directory, as a new user runs it."""
    target = Target("embedded")
    target.add(_serve("server", target.workdir, {})).wait_healthy()
    return target


def start_embedded_with_silent_webhooks() -> Target:
    """The embedded target with every event also sent as a webhook to a receiver that never
    answers (each POST waits out its timeout, then retries): chat delivery must not notice."""
    target = Target("embedded-webhooks")
    port = free_port()
    receiver = [sys.executable, "-m", "loadtests.silent_receiver", "--port", str(port)]
    target.add(Process("silent-receiver", receiver, target.workdir, {}))
    env = {
        "CHAT_WEBHOOK_URLS": f"http://127.0.0.1:{port}/chat-events",
        "CHAT_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    target.add(_serve("server", target.workdir, env)).wait_healthy()
    return target


def start_reference() -> Target:
    target = Target("reference")
    port = free_port()
    args = [sys.executable, "-m", "loadtests.reference_server", "--port", str(port)]
    process = Process("reference", args, target.workdir, {}, url=f"http://127.0.0.1:{port}")
    target.add(process).wait_healthy()
    return target


def _admin_sql(statement: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def _drop_database(name: str) -> None:
    try:
        _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception as exc:  # cleanup is best effort; say so rather than hide it
        print(f"bench: could not drop database {name}: {exc}", file=sys.stderr)


def _delete_queues(prefix: str) -> None:
    """Best effort: the queues and exchanges the RabbitMQ broker declared under ``prefix``
    (names as chat_adapters.rabbitmq declares them; a rename leaves litter, not failure)."""
    import asyncio

    try:
        import aio_pika
    except ImportError:
        return

    async def run() -> None:
        url = os.environ.get("CHAT_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
        connection = await aio_pika.connect(url, timeout=5)
        partitions = int(os.environ.get("CHAT_RABBITMQ_PARTITIONS", "32"))
        async with connection:
            for name in [f"{prefix}.messages.{i}" for i in range(partitions)] + [f"{prefix}.dead"]:
                channel = await connection.channel()
                try:
                    await channel.queue_delete(name)
                except Exception:  # an absent queue closes the channel; try the next name
                    continue
            for name in (f"{prefix}.messages", f"{prefix}.dead"):
                channel = await connection.channel()
                try:
                    await channel.exchange_delete(name)
                except Exception:
                    continue

    try:
        asyncio.run(run())
    except Exception as exc:
        print(f"bench: could not delete queues {prefix}.*: {exc}", file=sys.stderr)


def _cluster_env(target: Target, tag: str) -> dict[str, str]:
    """The settings every process of a cluster target shares: its own database, queue prefix
    and pub/sub channel, and one secret so that each node verifies the others' tokens."""
    env = {
        "CHAT_BROKER": "rabbitmq",
        "CHAT_SOCKETIO_MANAGER": "redis",
        "CHAT_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{target.database}",
        "CHAT_RABBITMQ_PREFIX": target.prefix or "",
        "CHAT_REDIS_CHANNEL": f"bench-{tag}",
        "CHAT_SECRET_KEY": secrets.token_urlsafe(48),
    }
    for key in ("CHAT_RABBITMQ_URL", "CHAT_REDIS_URL", "CHAT_RABBITMQ_PARTITIONS"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def _create_database(target: Target, env: dict[str, str]) -> None:
    assert target.database is not None
    _admin_sql(f'CREATE DATABASE "{target.database}"')
    migrate = subprocess.run(
        [CHAT, "migrate"], cwd=target.workdir, env=_env(env), capture_output=True, timeout=120
    )
    if migrate.returncode != 0:
        raise RuntimeError(f"chat migrate failed:\n{migrate.stdout.decode()[-2000:]}")


def start_cluster(servers: int = 2) -> Target:
    """``servers`` x `chat serve` + 1 `chat worker` over RabbitMQ, Redis and a fresh PostgreSQL
    database, isolated from any other run by a unique queue prefix and pub/sub channel."""
    tag = secrets.token_hex(4)
    name = "cluster" if servers == 2 else f"cluster-{servers}"
    target = Target(name, database=f"chat_bench_{tag}", prefix=f"bench-{tag}")
    env = _cluster_env(target, tag)
    try:
        _create_database(target, env)
        for node in range(servers):
            target.add(_serve(f"server-{node + 1}", target.workdir, env))
        worker_env = {**env, "CHAT_WORKER_OPS_PORT": str(free_port())}
        worker = target.add(Process("worker", [CHAT, "worker"], target.workdir, worker_env))
        for process in target.processes:
            if process.url is not None:
                process.wait_healthy()
        if worker.proc is not None and worker.proc.poll() is not None:
            raise RuntimeError(f"chat worker exited:\n{worker.log_tail()}")
    except BaseException:
        target.stop()
        raise
    return target


# What `chat worker` logs once started (chat_worker.consumer), waiting or consuming.
WORKER_READY = "consuming accepted messages"


@dataclass
class ScalableCluster(Target):
    """A cluster whose server nodes and workers are added and removed between phases (or a
    worker killed mid-phase), on one database: the scaling mode's users and rooms are set up
    once and each configuration only moves sockets."""

    env: dict[str, str] = field(default_factory=dict)
    servers: list[Process] = field(default_factory=list)
    workers: list[Process] = field(default_factory=list)
    started: dict[str, int] = field(default_factory=dict)  # per role: names stay unique
    names: dict[int, str] = field(default_factory=dict)  # pid -> name, the gone ones too

    @classmethod
    def start(cls, nodes: int, workers: int) -> ScalableCluster:
        tag = secrets.token_hex(4)
        target = cls("scaling", database=f"chat_bench_{tag}", prefix=f"bench-{tag}")
        target.env = _cluster_env(target, tag)
        try:
            _create_database(target, target.env)
            target.scale(nodes, workers)
        except BaseException:
            target.stop()
            raise
        return target

    def add(self, process: Process) -> Process:
        super().add(process)
        if process.proc is not None:
            self.names[process.proc.pid] = process.name
        return process

    def _name(self, role: str) -> str:
        self.started[role] = self.started.get(role, 0) + 1
        return f"{role}-{self.started[role]}"

    @property
    def urls(self) -> list[str]:
        return [p.url for p in self.servers if p.url is not None]

    def add_worker(self) -> Process:
        # Each worker of this host serves its operations endpoints on a port of its own.
        env = {**self.env, "CHAT_WORKER_OPS_PORT": str(free_port())}
        worker = self.add(Process(self._name("worker"), [CHAT, "worker"], self.workdir, env))
        self.workers.append(worker)
        return worker

    def _retire(self, process: Process, kill: bool = False) -> None:
        if kill and process.proc is not None and process.proc.poll() is None:
            process.proc.send_signal(signal.SIGKILL)
            process.proc.wait()
        else:
            process.stop()
        for group in (self.servers, self.workers, self.processes):
            if process in group:
                group.remove(process)

    def kill_worker(self) -> Process:
        """SIGKILL the oldest worker (today the one active on every partition): what a
        crash does, its unacknowledged messages redelivered to the next consumer."""
        oldest = self.workers[0]
        self._retire(oldest, kill=True)
        return oldest

    def scale(self, nodes: int, workers: int) -> None:
        """Start or stop the newest server nodes and workers until there are ``nodes`` and
        ``workers``; new servers are waited for until healthy."""
        while len(self.servers) > nodes:
            self._retire(self.servers[-1])
        while len(self.workers) > workers:
            self._retire(self.workers[-1])
        added = []
        while len(self.servers) < nodes:
            server = self.add(_serve(self._name("server"), self.workdir, self.env))
            self.servers.append(server)
            added.append(server)
        while len(self.workers) < workers:
            added.append(self.add_worker())
        for process in added:
            if process.url is not None:
                process.wait_healthy()
            elif not process.wait_logged(WORKER_READY):
                # Measured anyway; its start-up may then weigh on the next idle baseline.
                print(f"bench: {process.name} did not log {WORKER_READY!r}", file=sys.stderr)

    def role_pids(self) -> dict[str, list[int]]:
        """The pids of each role: ``servers``, ``workers`` and the services beside them."""
        from loadtests.roles import service_pids

        def live(group: list[Process]) -> list[int]:
            return [p.proc.pid for p in group if p.proc is not None and p.proc.poll() is None]

        return {"servers": live(self.servers), "workers": live(self.workers),
                **service_pids(self.database)}  # fmt: skip


STARTERS = {
    "embedded": start_embedded,
    "embedded-webhooks": start_embedded_with_silent_webhooks,
    "cluster": start_cluster,
    # One server node instead of two, same worker and services: how the cluster scales.
    "cluster-1": lambda: start_cluster(servers=1),
    "reference": start_reference,
}
