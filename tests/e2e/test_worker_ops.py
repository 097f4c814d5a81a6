"""A `chat worker` can be watched: /healthz, /readyz and /metrics on its own port, during a
burst; and a port that is taken stops it with one line, not a hidden failure."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.clients import Api, Socket
from tests.support.cluster import Cluster, cluster
from tests.support.processes import ChatProcess
from tests.support.services import POSTGRES, RABBITMQ, REDIS, require

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    for service in (POSTGRES, RABBITMQ, REDIS):
        require(service)
    with cluster(Path(tmp_path_factory.mktemp("worker-ops")), servers=1, workers=1) as c:
        yield c


def ops_url(worker: ChatProcess) -> str:
    return f"http://127.0.0.1:{worker.env['CHAT_WORKER_OPS_PORT']}"


def stored_total(metrics: str) -> float:
    found = re.search(r"^chat_messages_stored_total ([0-9.e+]+)$", metrics, re.M)
    assert found, "chat_messages_stored_total missing from the worker's /metrics"
    return float(found.group(1))


async def wait_ready(url: str, timeout: float = 30.0) -> httpx.Response:
    async with httpx.AsyncClient() as http, asyncio.timeout(timeout):
        while True:
            try:
                response = await http.get(f"{url}/readyz")
                if response.status_code == 200:
                    return response
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)  # polling a process that is starting: no event to wait on


async def test_the_worker_serves_health_readiness_and_metrics_during_a_burst(
    nodes: Cluster,
) -> None:
    worker = nodes.workers[0]
    url = ops_url(worker)
    ready = await wait_ready(url)
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok", "socketio": "ok"}
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{url}/healthz")).json() == {"status": "ok"}
        before = stored_total((await http.get(f"{url}/metrics")).text)

        api = Api(nodes.servers[0].url)
        alice = await api.signup("alice")
        room = await api.create_room(alice)
        socket = await Socket(nodes.servers[0].url, alice.token).connect()
        try:
            sends = [api.send(alice, room["id"], f"burst {i}") for i in range(40)]
            assert all(r.status_code == 202 for r in await asyncio.gather(*sends))
            await socket.wait_for("message:new", count=40, timeout=30)  # all stored
        finally:
            await socket.disconnect()
            await api.close()
        metrics = (await http.get(f"{url}/metrics")).text
        assert stored_total(metrics) >= before + 40
        assert "chat_broker_consume_seconds_count" in metrics
        assert (await http.get(f"{url}/nothing")).status_code == 404


def test_a_taken_operations_port_stops_the_worker_with_one_line(nodes: Cluster) -> None:
    taken = nodes.workers[0].env["CHAT_WORKER_OPS_PORT"]
    second = ChatProcess(
        ["worker", "--ops-port", taken], nodes.workdir, dict(nodes.env), name="worker-clash"
    ).start()
    assert second.proc is not None
    assert second.proc.wait(timeout=60) == 1
    assert "give each worker of a host its own --ops-port" in second.log()
    assert "Traceback" not in second.log()
