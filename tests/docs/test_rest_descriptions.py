"""The OpenAPI document and docs/api.md describe every REST route the server has.

The document must give every operation a stable, explicit ``operationId`` and list every
status the server really answers with (429 where a rate limit applies, 503 whenever a
backing service can be down); docs/api.md must name every API route.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from quart import Quart

from chat_bootstrap.container import build_container
from chat_bootstrap.settings import Settings
from chat_server.app import create_quart_app
from chat_server.openapi import RATE_LIMITED

ROOT = Path(__file__).resolve().parents[2]
METHODS = {"get", "post", "put", "patch", "delete"}


# The default server, and one serving the seed's routes too (CHAT_SEED_COMPAT).
@pytest.fixture(params=["off", "open"])
def app(tmp_path: Path, request: pytest.FixtureRequest) -> Quart:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/chat.db",
        secret_key="x" * 48,  # type: ignore[arg-type]
        seed_compat=request.param,
    )
    return create_quart_app(build_container(settings, role="server"))


@pytest.fixture
async def document(app: Quart) -> dict[str, Any]:
    response = await app.test_client().get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = await response.get_json()
    return body


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_every_operation_has_a_unique_explicit_operation_id(document: dict[str, Any]) -> None:
    operations = _operations(document)
    missing = [f"{m} {p}" for m, p, op in operations if "operationId" not in op]
    assert not missing, f"add these to chat_server.openapi.OPERATION_IDS: {missing}"
    ids = [op["operationId"] for _, _, op in operations]
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    # quart-schema's generated ids are the view's dotted endpoint; ours are camelCase words.
    assert all(re.fullmatch(r"[a-z][A-Za-z]+", i) for i in ids), ids


def test_api_operations_list_503_and_their_rate_limits(
    app: Quart, document: dict[str, Any]
) -> None:
    for method, path, operation in _operations(document):
        if not path.startswith("/api/"):
            continue
        statuses = set(operation["responses"])
        assert "503" in statuses, f"{method} {path} does not document 503"
    limited = {
        (method, rule.rule.replace("<", "{").replace(">", "}"))
        for rule in app.url_map.iter_rules()
        if rule.endpoint in RATE_LIMITED
        for method in rule.methods or ()
        if method.lower() in METHODS
    }
    assert limited, "no rate-limited route found: has RATE_LIMITED gone stale?"
    by_route = {(m, p): op for m, p, op in _operations(document)}
    for route in limited:
        assert "429" in by_route[route]["responses"], f"{route} does not document 429"


def test_docs_api_md_names_every_api_route(document: dict[str, Any]) -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    missing = [
        f"{method} {path}"
        for method, path, _ in _operations(document)
        if (path.startswith("/api/") or "chat-" in path) and f"`{method} {path}" not in text
    ]
    assert not missing, f"docs/api.md does not describe: {missing}"
