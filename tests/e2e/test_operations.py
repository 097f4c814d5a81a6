"""Operations of a real `chat serve`: health, readiness, metrics, request ids in logs, OpenAPI."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.clients import Api
from tests.support.processes import ChatProcess, chat_serve, free_port

CONTRACT_PATHS = {
    ("post", "/api/v1/auth/register"),
    ("post", "/api/v1/auth/login"),
    ("get", "/api/v1/users/me"),
    ("get", "/api/v1/users"),
    ("post", "/api/v1/rooms"),
    ("get", "/api/v1/rooms"),
    ("get", "/api/v1/rooms/{room_id}"),
    ("post", "/api/v1/rooms/{room_id}/members"),
    ("delete", "/api/v1/rooms/{room_id}/members/{user_id}"),
    ("post", "/api/v1/rooms/{room_id}/messages"),
    ("get", "/api/v1/rooms/{room_id}/messages"),
    ("patch", "/api/v1/rooms/{room_id}/messages/{message_id}"),
    ("delete", "/api/v1/rooms/{room_id}/messages/{message_id}"),
    ("post", "/api/v1/rooms/{room_id}/read"),
    ("get", "/api/v1/rooms/{room_id}/receipts"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/docs"),
    ("get", "/"),
}
PUBLIC = {"/api/v1/auth/register", "/api/v1/auth/login"}


def samples(text: str) -> dict[str, float]:
    """Prometheus text -> {'name{label="v",...}': value}, labels sorted by name."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            found[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return found


@pytest.fixture(scope="module")
def server_without_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatProcess]:
    """A server whose PostgreSQL is on a closed port, logging JSON: it starts, but is not ready."""
    env = {
        "CHAT_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test",
        "CHAT_AUTO_MIGRATE": "false",
        "CHAT_LOG_FORMAT": "json",
    }
    process = chat_serve(tmp_path_factory.mktemp("nodb"), env, name="nodb").start()
    yield process
    assert process.stop() == 0, process.log()


async def test_healthz_and_readyz_answer_ok(api: Api) -> None:
    r = await api.http.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = await api.http.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"database": "ok", "broker": "ok", "socketio": "ok"}


def test_readyz_names_the_database_when_it_is_unreachable(
    server_without_database: ChatProcess,
) -> None:
    url = server_without_database.url
    assert httpx.get(f"{url}/healthz").status_code == 200
    r = httpx.get(f"{url}/readyz", timeout=10)
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["failing"] == ["database"]
    assert body["checks"]["broker"] == "ok" and body["checks"]["socketio"] == "ok"
    assert body["error"]["code"] == "unavailable" and "database" in body["error"]["message"]


def test_json_logs_are_one_object_per_line_with_the_request_id(
    server_without_database: ChatProcess,
) -> None:
    request_id = f"probe-{uuid.uuid4().hex}"
    r = httpx.get(f"{server_without_database.url}/healthz", headers={"X-Request-ID": request_id})
    assert r.headers["X-Request-ID"] == request_id
    lines = [line for line in server_without_database.log().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"ts", "level", "logger", "message", "request_id"} <= e.keys() for e in entries)
    mine = [e for e in entries if e["request_id"] == request_id]
    assert mine and "GET /healthz 200" in mine[0]["message"]


async def test_request_id_is_echoed_or_generated_and_logged(api: Api, server: ChatProcess) -> None:
    given = f"req-{uuid.uuid4().hex}"
    r = await api.http.get("/api/v1/users/me", headers={"X-Request-ID": given})
    assert r.status_code == 401 and r.headers["X-Request-ID"] == given
    assert re.search(rf"\[{given}\].*GET /api/v1/users/me 401", server.log())
    # A header that is not a sane token is replaced, never copied into the log.
    r = await api.http.get("/healthz", headers={"X-Request-ID": "x" * 500})
    generated = r.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated) and "x" * 500 not in server.log()


async def test_passwords_and_tokens_never_reach_the_log(api: Api, server: ChatProcess) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    username = f"secretive_{uuid.uuid4().hex[:8]}"
    r = await api.http.post(
        "/api/v1/auth/register", json={"username": username, "password": password}
    )
    assert r.status_code == 201
    r = await api.http.post("/api/v1/auth/login", json={"username": username, "password": password})
    token = r.json()["access_token"]
    assert await api.http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    log = server.log()
    assert "POST /api/v1/auth/login 200" in log
    assert password not in log and token not in log


async def test_metrics_count_the_message_path(api: Api, open_socket) -> None:  # type: ignore[no-untyped-def]
    alice, bob = await api.signup("alice"), await api.signup("bob")
    room = await api.create_room(alice, bob)
    b = await open_socket(bob)
    r = await api.send(alice, room["id"], "counted")
    assert r.status_code == 202
    await b.wait_for("message:new", lambda m: m["id"] == r.json()["message"]["id"])

    r = await api.http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = samples(r.text)
    sent = 'method="POST",route="/api/v1/rooms/<room_id>/messages"'
    assert m[f'chat_http_requests_total{{{sent},status="202"}}'] >= 1
    assert m[f"chat_http_request_duration_seconds_count{{{sent}}}"] >= 1
    assert m["chat_messages_accepted_total"] >= 1
    assert m["chat_messages_stored_total"] >= 1
    assert m['chat_events_emitted_total{event="message:new"}'] >= 1
    assert m["chat_broker_publish_seconds_count"] >= 1
    assert m["chat_broker_consume_seconds_count"] >= 1
    assert m["chat_sockets_connected"] >= 1


async def test_openapi_documents_the_whole_contract(api: Api) -> None:
    doc = (await api.http.get("/openapi.json")).json()
    operations = {
        (method, path): op for path, item in doc["paths"].items() for method, op in item.items()
    }
    assert operations.keys() >= CONTRACT_PATHS
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for (method, path), op in operations.items():
        assert op.get("tags"), (method, path)
        assert any(code.startswith("2") for code in op["responses"]), (method, path)
        if path.startswith("/api/v1/server/"):
            # The app's backend calls these with an API key, in either header.
            assert op.get("security") == [{"apiKeyBearer": []}, {"apiKeyHeader": []}], path
        elif path.startswith("/api/"):
            wants_token = path not in PUBLIC
            assert (op.get("security") == [{"bearerAuth": []}]) is wants_token, (method, path)
        if path.startswith("/api/"):
            error = op["responses"]["default"]["content"]["application/json"]["schema"]
            assert error["properties"]["error"] == {"$ref": "#/components/schemas/ErrorDetail"}
    assert doc["components"]["schemas"]["ErrorDetail"]["required"] == ["code", "message"]


async def test_docs_page_loads_only_vendored_assets(api: Api) -> None:
    r = await api.http.get("/docs")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assets = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert assets and not [a for a in assets if "://" in a or a.startswith("//")]
    for asset in assets:
        assert (await api.http.get(asset)).status_code == 200, asset
    assert (
        Path(__file__)
        .parents[2]
        .joinpath("apps/server/chat_server/static/vendor/swagger-ui/LICENSE")
        .exists()
    )
