"""The seed's clients, unchanged, on a real `chat serve` with ``CHAT_SEED_COMPAT=open``:
the official socket.io JavaScript client speaks the seed's API (JSON-string payloads
included), and shares rooms with our own python-socketio clients in both directions."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import socketio

from tests.e2e.conftest import embedded_server
from tests.support.clients import Account, Api, Socket
from tests.support.cluster import Cluster, cluster
from tests.support.processes import CHAT, ChatProcess, clean_env
from tests.support.seed_client import SeedClient, install_seed_client
from tests.support.services import POSTGRES, RABBITMQ, REDIS, require

OpenSocket = Callable[[Account], Awaitable[Socket]]
# How long a seed socket may take to join a room (CHAT_SOCKET_PENDING_SECONDS).
JOIN_SECONDS = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatProcess]:
    install_seed_client()
    env = {"CHAT_SEED_COMPAT": "open", "CHAT_SOCKET_PENDING_SECONDS": str(JOIN_SECONDS)}
    yield from embedded_server(tmp_path_factory, env)


@pytest.fixture
async def seed_clients() -> AsyncIterator[Callable[[], Awaitable[SeedClient]]]:
    started: list[SeedClient] = []

    async def start() -> SeedClient:
        client = await SeedClient.start()
        started.append(client)
        return client

    yield start
    for client in started:
        await client.close()


async def seed_token(client: SeedClient, url: str, room: str, client_id: str) -> str:
    status, text = await client.http(
        "POST", f"{url}/chat-rooms/{room}/chat-token", {"clientId": client_id}
    )
    assert status == 200, text
    token: str = json.loads(text)["token"]
    return token


async def test_a_seed_client_speaks_the_seed_api(
    server: ChatProcess, seed_clients: Callable[[], Awaitable[SeedClient]]
) -> None:
    url = server.url
    seed = await seed_clients()
    token = await seed_token(seed, url, "lobby-1", "client-a")
    await seed.connect(url)

    await seed.emit("ping", "hello")
    assert await seed.wait_event("ping") == "pong hello"

    await seed.emit("joinroom", json.dumps({"token": token}))  # a JSON string, as the seed's
    joined = json.loads(await seed.wait_event("roomjoin"))
    assert joined == {"clientId": "client-a", "room": {"roomId": "lobby-1"}}

    status, text = await seed.http(
        "POST", f"{url}/chat-messages", {"content": "hello seed", "token": token}
    )
    assert (status, text) == (200, "")
    chat = json.loads(await seed.wait_event("chat"))
    assert chat["content"] == "hello seed"
    assert chat["clientId"] == "client-a" and chat["room"] == {"roomId": "lobby-1"}
    assert isinstance(chat["timestamp"], int) and chat["timestamp"] > 1_700_000_000_000

    status, text = await seed.http(
        "POST", f"{url}/chat-messages", {"content": "x", "token": token + "x"}
    )
    assert status == 400 and "invalid session token" in text

    status, text = await seed.http("GET", f"{url}/chat-rooms/lobby-1/clients")
    assert (status, json.loads(text)) == (200, ["client-a"])

    await seed.emit("leaveroom", json.dumps({"token": token}))
    left = json.loads(await seed.wait_event("roomleave"))
    assert left == {"clientId": "client-a", "room": {"roomId": "lobby-1"}}
    status, text = await seed.http(
        "POST", f"{url}/chat-messages", {"content": "gone", "token": token}
    )
    assert status == 400 and "invalid session token" in text
    status, text = await seed.http("GET", f"{url}/chat-rooms/lobby-1/clients")
    assert json.loads(text) == []
    # Of our events, a seed socket got none: only the seed's.
    assert {x["event"] for x in seed.lines if x["op"] == "event"} == {
        "ping",
        "roomjoin",
        "chat",
        "roomleave",
    }


async def test_seed_and_our_clients_share_a_room_both_ways(
    server: ChatProcess,
    api: Api,
    open_socket: OpenSocket,
    seed_clients: Callable[[], Awaitable[SeedClient]],
) -> None:
    url = server.url
    alice = await api.signup()
    r = await api.http.post("/api/v1/seed-rooms/mixed-1/join", headers=alice.headers)
    assert r.status_code == 200, r.text
    room_id = r.json()["room"]["id"]
    ours = await open_socket(alice)

    seed = await seed_clients()
    token = await seed_token(seed, url, "mixed-1", "client-b")
    await seed.connect(url)
    await seed.emit("joinroom", json.dumps({"token": token}))
    await seed.wait_event("roomjoin")

    # Seed -> ours: our send path (stored with a seq), heard as message:new.
    status, _ = await seed.http(
        "POST", f"{url}/chat-messages", {"content": "from the seed", "token": token}
    )
    assert status == 200
    [new] = await ours.wait_for("message:new", lambda m: m["body"] == "from the seed")
    assert new["room_id"] == room_id and new["seq"] == 1
    assert [m["body"] for m in await api.all_messages(alice, room_id)] == ["from the seed"]

    # Ours -> seed: heard as the seed's chat, the sender named by username.
    sent = await api.send(alice, room_id, "from our side")
    assert sent.status_code == 202
    chat = json.loads(
        await seed.wait_event("chat", lambda d: json.loads(d)["content"] == "from our side")
    )
    assert chat["clientId"] == alice.username and chat["room"] == {"roomId": "mixed-1"}
    # Our client never hears the seed's own events.
    assert "roomjoin" not in ours.events and "chat" not in ours.events


async def test_a_seed_socket_may_use_none_of_our_events(
    server: ChatProcess, seed_clients: Callable[[], Awaitable[SeedClient]]
) -> None:
    anonymous = Socket(server.url, None)
    await anonymous.connect()  # accepted as a seed socket: no access token
    try:
        with pytest.raises(socketio.exceptions.TimeoutError):  # not handled: no ack comes
            await anonymous.call("message:send", {"room_id": "x", "body": "hi"}, timeout=1.0)
    finally:
        await anonymous.disconnect()


async def test_a_seed_socket_that_joins_no_room_in_time_is_disconnected(
    server: ChatProcess,
) -> None:
    idle = Socket(server.url, None)
    await idle.connect()
    await asyncio.wait_for(idle.client.wait(), JOIN_SECONDS + 10)  # returns once disconnected
    assert not idle.client.connected


@pytest.fixture(scope="module")
def seed_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    for service in (POSTGRES, RABBITMQ, REDIS):
        require(service)
    install_seed_client()
    workdir = Path(tmp_path_factory.mktemp("seed-cluster"))
    with cluster(workdir, servers=2, workers=1, overrides={"CHAT_SEED_COMPAT": "open"}) as c:
        yield c


@pytest.mark.slow
async def test_a_seed_client_and_ours_on_two_nodes_of_a_cluster(
    seed_cluster: Cluster, seed_clients: Callable[[], Awaitable[SeedClient]]
) -> None:
    """Through the Redis manager and RabbitMQ: the seed socket on node A, ours on node B."""
    node_a, node_b = seed_cluster.servers[0].url, seed_cluster.servers[1].url
    api = Api(node_b)
    try:
        alice = await api.signup()
        r = await api.http.post("/api/v1/seed-rooms/cluster-1/join", headers=alice.headers)
        room_id = r.json()["room"]["id"]
        ours = await Socket(node_b, alice.token).connect()
        seed = await seed_clients()
        token = await seed_token(seed, node_a, "cluster-1", "client-c")
        await seed.connect(node_a)
        await seed.emit("joinroom", json.dumps({"token": token}))
        await seed.wait_event("roomjoin")

        status, _ = await seed.http(
            "POST", f"{node_a}/chat-messages", {"content": "seed on A", "token": token}
        )
        assert status == 200
        [new] = await ours.wait_for("message:new", lambda m: m["body"] == "seed on A")
        assert new["room_id"] == room_id and new["seq"] == 1
        assert (await api.send(alice, room_id, "ours on B")).status_code == 202
        chat = json.loads(
            await seed.wait_event("chat", lambda d: json.loads(d)["content"] == "ours on B")
        )
        assert chat["clientId"] == alice.username

        await seed.emit("leaveroom", json.dumps({"token": token}))
        left = json.loads(await seed.wait_event("roomleave"))
        assert left == {"clientId": "client-c", "room": {"roomId": "cluster-1"}}
        await ours.disconnect()
    finally:
        await api.close()


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatProcess]:
    """CHAT_SEED_COMPAT=api-key with no shared secret: server API keys only."""
    install_seed_client()
    yield from embedded_server(tmp_path_factory, {"CHAT_SEED_COMPAT": "api-key"})


def server_api_key(server: ChatProcess, scope: str) -> str:
    """`chat keys create` against the server's own database (its working directory)."""
    result = subprocess.run(
        [CHAT, "keys", "create", "--name", "seed-e2e", "--scope", scope],
        cwd=server.workdir,
        env=clean_env(server.env),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


async def test_api_key_mode_issues_seed_tokens_for_a_server_api_key_only(
    keyed_server: ChatProcess, seed_clients: Callable[[], Awaitable[SeedClient]]
) -> None:
    url = keyed_server.url
    seed = await seed_clients()
    route = f"{url}/chat-rooms/keyed-1/chat-token"
    status, _ = await seed.http("POST", route, {"clientId": "client-k"})
    assert status == 401
    reader = server_api_key(keyed_server, "messages:read")
    status, _ = await seed.http("POST", route, {"clientId": "client-k"}, {"X-API-Key": reader})
    assert status == 403  # a key, but not one that may make users
    writer = server_api_key(keyed_server, "users:write")
    status, text = await seed.http("POST", route, {"clientId": "client-k"}, {"X-API-Key": writer})
    assert status == 200, text
    token = json.loads(text)["token"]
    # The token is the credential from then on: the seed client itself needs no key.
    await seed.connect(url)
    await seed.emit("joinroom", json.dumps({"token": token}))
    await seed.wait_event("roomjoin")
    status, _ = await seed.http(
        "POST", f"{url}/chat-messages", {"content": "keyed", "token": token}
    )
    assert status == 200
    assert json.loads(await seed.wait_event("chat"))["content"] == "keyed"
