"""With CHAT_OPS_PORT set, /healthz, /readyz and /metrics are off the public listener.

Before, /metrics and /readyz answered anyone who could reach the server: how busy the
node is, what it runs, and a probe of every backing service per call.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.processes import ChatProcess, chat_serve, free_port

OPS_PATHS = ("/healthz", "/readyz", "/metrics")


@pytest.fixture(scope="module")
def ops_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, ops_port: int) -> Iterator[ChatProcess]:
    env = {"CHAT_OPS_PORT": str(ops_port), "CHAT_OPS_HOST": "127.0.0.1"}
    process = chat_serve(tmp_path_factory.mktemp("ops"), env).start(wait_ready=False)
    ops = ChatProcess([], process.workdir, port=ops_port, name="ops", proc=process.proc)
    ops.wait_healthy()  # the ops listener answers /healthz once the server serves
    yield process
    assert process.stop() == 0, process.log()


async def test_the_ops_endpoints_answer_only_on_the_ops_port(
    server: ChatProcess, ops_port: int
) -> None:
    async with httpx.AsyncClient(timeout=10.0) as http:
        for path in OPS_PATHS:
            public = await http.get(f"{server.url}{path}")
            assert public.status_code == 404, (path, public.text)
            assert public.json()["error"]["code"] == "not_found"
        health = await http.get(f"http://127.0.0.1:{ops_port}/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        ready = await http.get(f"http://127.0.0.1:{ops_port}/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ok"
        metrics = await http.get(f"http://127.0.0.1:{ops_port}/metrics")
        assert metrics.status_code == 200
        assert "chat_socket_sessions_pending" in metrics.text
        # The public API is where it was.
        assert (await http.get(f"{server.url}/openapi.json")).status_code == 200
        # And the ops listener serves nothing else.
        assert (await http.get(f"http://127.0.0.1:{ops_port}/openapi.json")).status_code == 404
