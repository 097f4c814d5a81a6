"""Fuzz every operation of /openapi.json against a real embedded `chat serve`, over HTTP.

schemathesis generates requests from the document (valid and invalid bodies, query
strings, path parameters), sent with a real user's bearer token. Two properties must
hold for every answer: no 5xx, and every 4xx/5xx has the contract's error shape
``{"error": {"code", "message"}}``. Bounded to keep the run short: MAX_EXAMPLES per
operation, no deadline (a 2-core CI box is slow sometimes, not wrong). A last pass puts
the text corpus (tests/support/text_corpus.py) in every string of a valid request. The
whole module runs on SQLite and on PostgreSQL storage.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.strategies import SearchStrategy
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.e2e.conftest import STORAGES, served_on
from tests.support.processes import ChatProcess
from tests.support.text_corpus import ACCEPTED_BODIES, REFUSED_EVERYWHERE, REFUSED_IN_NAMES_ONLY

MAX_EXAMPLES = 25
# Put in every string a request carries (path, query, body), one text at a time.
TEXT_CORPUS = [
    *REFUSED_EVERYWHERE.values(),
    *REFUSED_IN_NAMES_ONLY.values(),
    *(body for body in ACCEPTED_BODIES.values() if len(body) < 100),
]
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


@pytest.fixture(scope="module", params=STORAGES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChatProcess]:
    """SQLite and PostgreSQL: they differ in the text they hold (PostgreSQL refuses NUL)."""
    yield from served_on(request.param, tmp_path_factory)


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
            timeout=30,  # a loaded CI host can take seconds; a hang is still caught
        )

    run()


def with_text(case: Any, text: str) -> Any:
    """The case with ``text`` in place of every string it carries (a list of strings: one).
    A lone surrogate has no UTF-8, so no URL can carry it: it goes in the body only."""
    in_url = not any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)
    for parameters in (case.path_parameters, case.query) if in_url else ():
        for name, value in (parameters or {}).items():
            if isinstance(value, str):
                parameters[name] = text
    if isinstance(case.body, dict):
        for name, value in case.body.items():
            if isinstance(value, str):
                case.body[name] = text
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                case.body[name] = [text]
    return case


def corpus_pass(
    operation: Any, room_id: str, base_url: str, headers: dict[str, str], cases: Counter[str]
) -> None:
    """One valid request of the operation, sent again with each text of the corpus in every
    string: control characters, lone surrogates, bidi overrides, invisible text, RTL,
    emoji. Schemathesis draws such text rarely; the rules of chat_domain.text are about it."""
    room = {"room_id": room_id} if "{room_id}" in operation.path else {}
    label = f"{operation.label} (text corpus)"

    @given(case=operation.as_strategy(GenerationMode.POSITIVE, path_parameters=room))
    @settings(
        max_examples=1,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],
    )
    def run(case: Any) -> None:
        for text in TEXT_CORPUS:
            cases[label] += 1
            with_text(case, text).call_and_validate(
                base_url=base_url,
                headers=headers,
                checks=[not_a_server_error, contract_error_shape],
                timeout=30,  # a loaded CI host can take seconds; a hang is still caught
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
        try:
            corpus_pass(operation, room_id, server.url, bearer, cases)
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{operation.label} (text corpus): {exc}")

    total = sum(cases.values())
    report = REPORT.with_name(f"openapi-cases-{server.name}.json")  # one per storage
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(
        json.dumps({"total": total, "failures": failures, "by_pass": cases}, indent=2)
    )
    print(f"\nschemathesis: {total} cases over {len(operations)} operations ({report})")
    assert total >= len(operations) * (MAX_EXAMPLES + len(TEXT_CORPUS))
    assert not failures, "\n\n".join(failures)
