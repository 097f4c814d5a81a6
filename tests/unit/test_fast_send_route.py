"""The raw-ASGI send lane (chat_server/fast_send.py) mirrors one Quart view: this fails when
that view's route, methods, decorators or body change and the lane was not brought along.

tests/e2e/test_fast_send.py compares the two answers request by request, for the requests
it sends; these checks hold for any request. The lane answers only what Quart would route to
``api.messages.send``, runs the same steps in the same order (the bearer token as
``authenticated`` resolves it, then the body as ``validate_request`` parses it, with the same
model, then the use case) and answers what the view answers. A failure of the last test
means the view or its authentication changed: re-read them, bring ``FastSendRoute`` in
line, then record the new hash here.
"""

from __future__ import annotations

import hashlib
import inspect
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from quart_schema import DataSource

from chat_bootstrap.container import build_container
from chat_bootstrap.settings import Settings
from chat_server import fast_send, http
from chat_server.api import messages
from chat_server.app import create_quart_app
from chat_server.schemas import SendMessageBody

ENDPOINT = "api.messages.send"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Quart:
    database = tmp_path_factory.mktemp("fast-send") / "chat.db"
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=f"sqlite+aiosqlite:///{database}"
    )
    return create_quart_app(build_container(settings, role="server"))


def decorators(view: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """The view and every function it wraps, outermost first (functools.wraps' chain)."""
    current: Callable[..., Any] | None = view
    while current is not None:
        yield current
        current = getattr(current, "__wrapped__", None)


def test_the_lanes_route_is_quarts_post_rule_for_sends(app: Quart) -> None:
    rules = [r for r in app.url_map.iter_rules() if r.endpoint == ENDPOINT]
    assert [r.rule for r in rules] == [fast_send.ROUTE]
    assert rules[0].methods is not None and "POST" in rules[0].methods


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/rooms/r1/messages",
        "/api/v1/rooms/0b7e2f3c-5d7a-4c41-8e0f-9a6b1c2d3e4f/messages",
        "/api/v1/rooms/r 1/messages",  # ASGI paths come percent-decoded
        "/api/v1/rooms/\u00fc/messages",
        "/api/v1/rooms/../messages",
        "/api/v1/rooms/r1/messages/",
        "/api/v1/rooms//messages",
        "/api/v1/rooms/a/b/messages",
        "/api/v1/rooms/r1/messages/m1",
        "/api/v1/rooms/r1/messages\n",  # "%0A" after the path: Quart finds no route
        "/api/v1/rooms/r1\n/messages",
        "/api/v2/rooms/r1/messages",
        "/API/v1/rooms/r1/messages",
    ],
)
def test_the_lane_takes_a_path_only_when_quart_routes_it_to_the_send_view(
    app: Quart, path: str
) -> None:
    lane = fast_send.SEND_PATH.match(path)
    try:
        endpoint, arguments = app.url_map.bind("chat.test").match(path, method="POST")
    except Exception:  # not found, a redirect, method not allowed: not the send view
        endpoint, arguments = None, {}
    if lane is not None:
        assert (endpoint, arguments) == (ENDPOINT, {"room_id": lane[1]})
    if path == "/api/v1/rooms/r1/messages":
        assert lane is not None  # and the plain path is the lane's, or the lane is dead


def test_the_view_authenticates_then_validates_the_lanes_model_then_runs(app: Quart) -> None:
    served = app.view_functions[ENDPOINT]
    assert served is messages.send
    chain = list(decorators(served))
    # Outermost first: the order the steps run in, which the lane repeats.
    assert [f.__code__.co_qualname for f in chain] == [
        "authenticated.<locals>.wrapper",
        "validate_request.<locals>.decorator.<locals>.wrapper",
        "send",
    ], "the send view's decorators changed: change FastSendRoute._answer alike"
    authenticated, validated, view = chain
    assert authenticated.__code__ is http.authenticated(view).__code__
    assert Path(validated.__code__.co_filename).parts[-2:] == ("quart_schema", "validation.py")
    # The body model and where it is read from: the lane validates JSON with the same model.
    assert validated._quart_schema_request_schema == (SendMessageBody, DataSource.JSON)  # type: ignore[attr-defined]
    assert vars(fast_send)["SendMessageBody"] is SendMessageBody
    assert view.__code__.co_filename == messages.__file__


def test_the_lane_reads_the_token_and_body_limit_as_quart_does(app: Quart) -> None:
    assert vars(fast_send)["bearer_token"] is http.bearer_token  # the same parsing of Authorization
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert app.config["MAX_CONTENT_LENGTH"] == settings.max_body_bytes  # what the lane reads


def source_hash(function: Callable[..., Any]) -> str:
    return hashlib.sha256(textwrap.dedent(inspect.getsource(function)).encode()).hexdigest()[:16]


@pytest.mark.parametrize(
    ("function", "recorded"),
    [
        (messages.send, "5dc956674f7cd9c8"),
        (http.authenticated, "dcc8aca9ed2c6e50"),
        (http.current_user, "4009d240bb1452ca"),
    ],
    ids=lambda v: getattr(v, "__qualname__", "hash"),
)
def test_the_code_the_lane_mirrors_is_as_recorded(
    function: Callable[..., Any], recorded: str
) -> None:
    found = source_hash(function)
    assert found == recorded, (
        f"{function.__module__}.{function.__qualname__} changed (source hash {found}, "
        f"recorded {recorded}): bring apps/server/chat_server/fast_send.py in line, then "
        f"record the new hash in {Path(__file__).name}"
    )
