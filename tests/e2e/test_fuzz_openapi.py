"""Fuzz every operation of /openapi.json against a real embedded `chat serve`, over HTTP.

schemathesis generates requests from the document (valid and invalid bodies, query
strings, path parameters), sent with a real user's bearer token. Two properties must
hold for every answer: no 5xx, and every 4xx/5xx has the contract's error shape
``{"error": {"code", "message"}}``. Bounded to keep the run short: MAX_EXAMPLES per
operation, no deadline (a 2-core CI box is slow sometimes, not wrong).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.strategies import SearchStrategy
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.support.processes import ChatProcess

MAX_EXAMPLES = 25
REPORT = Path(__file__).parents[2] / "var" / "fuzz" / "openapi-cases.json"


@schemathesis.check
def contract_error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx answer is JSON ``{"error": {"code": str, "message": str, ...}}``."""
    if response.status_code < 400:
        return None
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise AssertionError(f"{response.status_code} answer is not JSON: {exc}") from None
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"{response.status_code} answer has no error object: {body}"
    assert isinstance(error.get("code"), str) and error["code"], f"no error.code: {body}"
    assert isinstance(error.get("message"), str), f"no error.message: {body}"
    return True


@pytest.fixture(scope="module")
def bearer(server: ChatProcess) -> dict[str, str]:
    """A registered, logged-in user's Authorization header, sent with every fuzzed request."""
    account = {"username": "fuzzer", "password": "correct horse battery"}
    register = httpx.post(f"{server.url}/api/v1/auth/register", json=account)
    assert register.status_code == 201, register.text
    login = httpx.post(f"{server.url}/api/v1/auth/login", json=account)
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


@pytest.fixture(scope="module")
def room_id(server: ChatProcess, bearer: dict[str, str]) -> str:
    """A room the fuzzer is in: with it, generated bodies reach past the membership check."""
    r = httpx.post(f"{server.url}/api/v1/rooms", json={"name": "fuzz"}, headers=bearer)
    assert r.status_code == 201, r.text
    room: str = r.json()["room"]["id"]
    return room


def passes(operation: Any, room_id: str) -> list[tuple[str, SearchStrategy[Any]]]:
    """Strategies for one operation: valid and invalid requests, and, for an operation on a
    room, valid requests on the fuzzer's real room (else nearly every case is a 404)."""
    found = [("positive", operation.as_strategy(GenerationMode.POSITIVE))]
    # Nothing to get wrong in a request without parameters or body: no negative pass.
    if any(True for _ in operation.iter_parameters()) or operation.body:
        found.append(("negative", operation.as_strategy(GenerationMode.NEGATIVE)))
    if "{room_id}" in operation.path:
        found.append(
            (
                "positive, real room",
                operation.as_strategy(
                    GenerationMode.POSITIVE, path_parameters={"room_id": room_id}
                ),
            )
        )
    return found


def fuzz(
    strategy: SearchStrategy[Any],
    label: str,
    base_url: str,
    headers: dict[str, str],
    cases: Counter[str],
) -> None:
    """Run up to MAX_EXAMPLES cases of one strategy; raises the first failure, shrunk."""

    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    def run(case: Any) -> None:
        cases[label] += 1
        case.call_and_validate(
            base_url=base_url,
            headers=headers,
            checks=[not_a_server_error, contract_error_shape],
            timeout=10,
        )

    run()


def test_no_server_error_and_errors_have_the_contract_shape(
    server: ChatProcess, bearer: dict[str, str], room_id: str
) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", timeout=10)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    cases: Counter[str] = Counter()
    failures: list[str] = []

    for operation in operations:
        for mode, strategy in passes(operation, room_id):
            label = f"{operation.label} ({mode})"
            # One operation's failure must not hide the others': collect, assert at the end.
            try:
                fuzz(strategy, label, server.url, bearer, cases)
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{label}: {exc}")

    total = sum(cases.values())
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        json.dumps({"total": total, "failures": failures, "by_pass": cases}, indent=2)
    )
    print(f"\nschemathesis: {total} cases over {len(operations)} operations ({REPORT})")
    assert total >= len(operations) * MAX_EXAMPLES
    assert not failures, "\n\n".join(failures)
