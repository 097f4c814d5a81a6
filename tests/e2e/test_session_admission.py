"""Sessions before login are bounded: per client address, per node, and in time.

engine.io opens a session on the first polling GET, before the socket.io connect packet
where the token is checked. Before these bounds one client opened 30,777 sessions in 15 s
and the server's memory grew by 450 MiB; now past the bound a handshake is refused (429
for the address, 503 for the node) and sessions that never log in are closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.clients import Api, Socket
from tests.support.metrics import scrape, wait_for_sample
from tests.support.processes import ChatProcess, chat_serve
from tests.support.raw_socket import RawSocket

PER_ADDRESS = 8
MAX_PENDING = 24
PENDING_SECONDS = 6
HANDSHAKE = "/socket.io/?EIO=4&transport=polling"
FLOOD = 1000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatProcess]:
    env = {
        "CHAT_SOCKET_PENDING_PER_ADDRESS": str(PER_ADDRESS),
        "CHAT_SOCKET_PENDING_MAX": str(MAX_PENDING),
        "CHAT_SOCKET_PENDING_SECONDS": str(PENDING_SECONDS),
        # The test plays the proxy: X-Forwarded-For names the client's address.
        "CHAT_TRUSTED_PROXY_HOPS": "1",
    }
    process = chat_serve(tmp_path_factory.mktemp("admission"), env).start()
    yield process
    assert process.stop() == 0, process.log()


@pytest.fixture
async def http(server: ChatProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as client:
        yield client


async def handshake(http: httpx.AsyncClient, address: str) -> httpx.Response:
    return await http.get(HANDSHAKE, headers={"X-Forwarded-For": address})


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_handshakes_are_refused_at_the_bounds_and_pending_sessions_expire(
    server: ChatProcess, http: httpx.AsyncClient
) -> None:
    # One address: PER_ADDRESS sessions, then 429 with the contract's error shape.
    codes = [(await handshake(http, "10.0.0.1")).status_code for _ in range(PER_ADDRESS + 4)]
    assert codes == [200] * PER_ADDRESS + [429] * 4
    refused = await handshake(http, "10.0.0.1")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1

    # Many addresses: the node holds MAX_PENDING in all, then 503.
    others = [(await handshake(http, f"10.0.1.{i}")).status_code for i in range(MAX_PENDING)]
    assert others == [200] * (MAX_PENDING - PER_ADDRESS) + [503] * PER_ADDRESS
    samples = await scrape(server.url, http)
    assert samples["chat_socket_sessions_pending"] == MAX_PENDING
    assert samples['chat_socket_handshakes_refused_total{reason="per_address"}'] >= 5
    assert samples['chat_socket_handshakes_refused_total{reason="node_full"}'] >= PER_ADDRESS

    # Sessions that never send an accepted connect packet are closed, and the slots free.
    samples = await wait_for_sample(
        server.url, "chat_socket_sessions_pending", lambda v: v == 0, timeout=PENDING_SECONDS * 5
    )
    assert samples["chat_socket_sessions_expired_total"] >= MAX_PENDING
    assert (await handshake(http, "10.0.0.1")).status_code == 200


async def test_a_flood_of_handshakes_from_one_address_holds_no_memory(
    server: ChatProcess, http: httpx.AsyncClient
) -> None:
    assert server.proc is not None
    rss_before = vm_rss_kib(server.proc.pid)
    codes = [(await handshake(http, "10.0.2.1")).status_code for _ in range(FLOOD)]
    # PER_ADDRESS at a time (a few more rounds if the flood outlasts PENDING_SECONDS).
    assert codes[:PER_ADDRESS] == [200] * PER_ADDRESS
    assert codes.count(200) < FLOOD // 10
    samples = await scrape(server.url, http)
    assert samples["chat_socket_sessions_pending"] <= MAX_PENDING
    # 1,000 sessions held ~15 MiB before the bound; refused handshakes hold nothing.
    assert vm_rss_kib(server.proc.pid) - rss_before < 12 * 1024


async def test_a_websocket_handshake_past_the_bound_is_refused(
    server: ChatProcess, http: httpx.AsyncClient
) -> None:
    # From the peer address (no X-Forwarded-For): fill its pending slots with polling.
    assert [(await http.get(HANDSHAKE)).status_code for _ in range(PER_ADDRESS)] == [200] * (
        PER_ADDRESS
    )
    with pytest.raises(ConnectionError, match="429"):
        await RawSocket.open(server.url)
    await wait_for_sample(
        server.url, "chat_socket_sessions_pending", lambda v: v == 0, timeout=PENDING_SECONDS * 5
    )


async def test_a_logged_in_socket_is_not_pending(server: ChatProcess) -> None:
    """A real client's sessions stop counting once logged in: more than PER_ADDRESS of
    them from one address all connect."""
    api = Api(server.url)
    try:
        account = await api.signup()
        sockets = [
            await Socket(server.url, account.token).connect() for _ in range(PER_ADDRESS + 2)
        ]
        samples = await scrape(server.url, api.http)
        assert samples["chat_socket_sessions_pending"] == 0
        for s in sockets:
            await s.disconnect()
    finally:
        await api.close()
