"""A real cluster on this machine: `chat serve` nodes and `chat worker`s on RabbitMQ, Redis
and PostgreSQL, each run isolated by its own database, queue prefix and Redis channel."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from tests.support.processes import (
    CHAT,
    ChatProcess,
    chat_serve,
    chat_worker,
    clean_env,
    free_port,
)
from tests.support.rabbitmq import delete_topology
from tests.support.services import POSTGRES, RABBITMQ, REDIS

ADMIN_DSN = POSTGRES.url.replace("postgresql+asyncpg://", "postgresql://")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new PostgreSQL database for one test module; dropped afterwards."""
    name = f"chat_e2e_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES.url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class Cluster:
    workdir: Path
    database_url: str
    prefix: str = field(default_factory=lambda: f"e2e-{uuid.uuid4().hex[:8]}")
    servers: list[ChatProcess] = field(default_factory=list)
    workers: list[ChatProcess] = field(default_factory=list)
    overrides: dict[str, str] = field(default_factory=dict)  # CHAT_* of every process
    # Each worker's Prometheus endpoint (on its CHAT_WORKER_OPS_PORT), by worker name.
    metrics_urls: dict[str, str] = field(default_factory=dict)

    @property
    def redis_channel(self) -> str:
        return f"{self.prefix}-socketio"

    @property
    def env(self) -> dict[str, str]:
        return {
            "CHAT_BROKER": "rabbitmq",
            "CHAT_RABBITMQ_URL": RABBITMQ.url,
            "CHAT_RABBITMQ_PREFIX": self.prefix,
            "CHAT_SOCKETIO_MANAGER": "redis",
            "CHAT_REDIS_URL": REDIS.url,
            "CHAT_REDIS_CHANNEL": self.redis_channel,
            "CHAT_DATABASE_URL": self.database_url,
            "CHAT_SECRET_KEY": "e2e-cluster-secret-key-0123456789abcdef",
            "CHAT_EMBEDDED_WORKER": "false",
            "CHAT_BROKER_PUBLISH_TIMEOUT": "3",
        } | self.overrides

    def migrate(self) -> None:
        subprocess.run(
            [CHAT, "migrate"], cwd=self.workdir, env=clean_env(self.env), check=True, timeout=60
        )

    def add_server(self) -> ChatProcess:
        server = chat_serve(self.workdir, self.env, name=f"server{len(self.servers) + 1}").start()
        self.servers.append(server)
        return server

    def add_worker(self) -> ChatProcess:
        """A worker with its operations endpoints on a free port (see ``metrics_urls``)."""
        name, port = f"worker{len(self.workers) + 1}", free_port()
        env = self.env | {"CHAT_WORKER_OPS_PORT": str(port)}
        worker = chat_worker(self.workdir, env, name=name).start()
        self.workers.append(worker)
        self.metrics_urls[name] = f"http://127.0.0.1:{port}/metrics"
        return worker

    def stop(self) -> None:
        for process in [*self.servers, *self.workers]:
            process.stop()
        asyncio.run(delete_topology(RABBITMQ.url, self.prefix))


@contextmanager
def cluster(
    workdir: Path, servers: int = 2, workers: int = 1, overrides: dict[str, str] | None = None
) -> Iterator[Cluster]:
    with fresh_database() as url:
        c = Cluster(workdir, url, overrides=dict(overrides or {}))
        c.migrate()
        try:
            for _ in range(servers):
                c.add_server()
            for _ in range(workers):
                c.add_worker()
            yield c
        finally:
            c.stop()


@contextmanager
def embedded_on_postgres(
    workdir: Path, extra: Mapping[str, str] | None = None
) -> Iterator[ChatProcess]:
    """One `chat serve` as embedded as it gets (in-memory broker, its own worker) but storing
    to a fresh PostgreSQL database: what differs between the SQL adapters shows end to end."""
    with fresh_database() as url:
        env = {"CHAT_DATABASE_URL": url, "CHAT_AUTO_MIGRATE": "true", **(extra or {})}
        server = chat_serve(workdir, env, name="server-postgres").start()
        try:
            yield server
        finally:
            code = server.stop()
            assert code == 0, f"server did not stop cleanly ({code}):\n{server.log()}"
