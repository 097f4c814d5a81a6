"""End-to-end fixtures: a real `chat serve` on embedded defaults, real clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest

from tests.support.clients import Account, Api, Socket
from tests.support.cluster import Cluster, embedded_on_postgres
from tests.support.processes import ChatProcess, chat_serve
from tests.support.services import POSTGRES, require


def embedded_server(
    tmp_path_factory: pytest.TempPathFactory, env: Mapping[str, str] | None = None
) -> Iterator[ChatProcess]:
    """One embedded `chat serve`, started exactly as a new user would: no configuration at
    all (but ``env``), in an empty working directory (SQLite lands in ./var/)."""
    workdir: Path = tmp_path_factory.mktemp("embedded")
    process = chat_serve(workdir, env).start()
    yield process
    code = process.stop()
    assert code == 0, f"server did not stop cleanly ({code}):\n{process.log()}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatProcess]:
    """One embedded `chat serve` per test module."""
    yield from embedded_server(tmp_path_factory)


# A module whose tests should also run on PostgreSQL storage (the SQL adapters differ in
# what text they hold) overrides ``server`` with params=STORAGES and ``served_on``.
STORAGES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def served_on(
    storage: str, tmp_path_factory: pytest.TempPathFactory, env: Mapping[str, str] | None = None
) -> Iterator[ChatProcess]:
    """An embedded `chat serve` storing to SQLite or to a fresh PostgreSQL database."""
    if storage == "sqlite":
        yield from embedded_server(tmp_path_factory, env)
        return
    require(POSTGRES)
    with embedded_on_postgres(tmp_path_factory.mktemp("embedded-postgres"), env) as process:
        yield process


@pytest.fixture
async def api(server: ChatProcess) -> AsyncIterator[Api]:
    client = Api(server.url)
    yield client
    await client.close()


@pytest.fixture
async def apis(nodes: Cluster) -> AsyncIterator[list[Api]]:
    """One REST client per server node of the module's cluster (its ``nodes`` fixture)."""
    clients = [Api(server.url) for server in nodes.servers]
    yield clients
    for client in clients:
        await client.close()


@pytest.fixture
async def sockets() -> AsyncIterator[list[Socket]]:
    """Connect sockets with ``await open_socket(account)``; all are closed after the test."""
    opened: list[Socket] = []
    yield opened
    for s in opened:
        await s.disconnect()


@pytest.fixture
def open_socket(server: ChatProcess, sockets: list[Socket]):  # type: ignore[no-untyped-def]
    async def connect(account: Account | None, token: str | None = None) -> Socket:
        s = Socket(server.url, token if account is None else account.token)
        await s.connect()
        sockets.append(s)
        return s

    return connect
