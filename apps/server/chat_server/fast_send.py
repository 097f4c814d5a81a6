"""The send endpoint on raw ASGI, in front of Quart, for the plain case of a send.

Under load, a send is most of what a server answers, and Quart's request machinery
(request context, hooks, werkzeug headers, response object) cost more CPU than the whole
send does on raw ASGI: a `GET /healthz` took 1.3 ms of server CPU where the bench's
reference server answers a send in 0.6 ms. This lane answers `POST
/api/v1/rooms/{room_id}/messages` itself when the request is the plain case: a bearer
token, a Content-Length within the body limit, no Origin header (no CORS to answer). Any
other request goes to Quart untouched, which stays the definition of the endpoint (its
route, its schema in the OpenAPI document, its answers to every odd request).

The lane answers exactly what Quart would: the same checks in the same order (token,
JSON, schema, use case), the same JSON, the same headers, the same access log line and
metrics; `tests/e2e/test_fast_send.py` sends the same requests both ways and compares.
"""

from __future__ import annotations

import logging
import math
import re
import time
from typing import Any

import orjson
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGISendCallable,
    HTTPResponseStartEvent,
    Scope,
)
from pydantic import ValidationError

from chat_bootstrap.container import Container
from chat_bootstrap.logs import REQUEST_ID
from chat_domain.errors import DomainError, RateLimited, Unauthorized
from chat_domain.views import message_view
from chat_server.errors import STATUS_BY_CODE, describe_validation_error, error_body
from chat_server.http import bearer_token
from chat_server.observability import (
    HTTP_REQUESTS,
    HTTP_SECONDS,
    REQUEST_ID_HEADER,
    request_id_from,
)
from chat_server.schemas import SendMessageBody

SEND_PATH = re.compile(r"^/api/v1/rooms/([^/]+)/messages$")
ROUTE = "/api/v1/rooms/<room_id>/messages"  # Quart's rule: one metrics label for both ways
log = logging.getLogger("chat.http")
server_log = logging.getLogger("chat.server")

# What chat_server.security adds to every answer (no CORS: requests with Origin go to Quart).
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"vary", b"Origin"),
]


class FastSendRoute:
    """ASGI middleware: the plain sends answered here, everything else passed to ``app``."""

    def __init__(self, app: ASGIFramework, container: Container) -> None:
        self._app = app
        self._max_body = container.settings().max_body_bytes
        self._authenticate = container.authenticate()
        self._send_message = container.send_message()

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        match = SEND_PATH.match(scope["path"])
        headers = dict(scope["headers"]) if match else {}
        if match is None or not self._plain(headers):
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from(_text(headers.get(REQUEST_ID_HEADER.lower().encode())))
        REQUEST_ID.set(request_id)
        body = await _read_body(receive)
        try:
            status, answer, extra = 202, await self._answer(match[1], headers, body), []
        except DomainError as error:
            status = STATUS_BY_CODE.get(error.code, 400)
            answer = error_body(error.code, error.message, error.details)
            extra = _retry_after(error)
        except _Malformed:
            status, answer, extra = 400, error_body("validation_error", "malformed JSON body"), []
        except ValidationError as error:
            message, details = describe_validation_error(error)
            status, answer, extra = 422, error_body("validation_error", message, details), []
        except Exception:
            server_log.exception("unhandled error")  # the trace goes to the log only
            status, answer, extra = 500, error_body("internal_error", "internal error"), []
        await _respond(send, status, answer, [(b"x-request-id", request_id.encode()), *extra])
        elapsed = time.perf_counter() - started
        HTTP_REQUESTS.labels("POST", ROUTE, str(status)).inc()
        HTTP_SECONDS.labels("POST", ROUTE).observe(elapsed)
        log.info("%s %s %d %.1fms", "POST", scope["path"], status, elapsed * 1000)

    def _plain(self, headers: dict[bytes, bytes]) -> bool:
        length = headers.get(b"content-length")
        return (
            b"origin" not in headers
            and b"transfer-encoding" not in headers
            and bearer_token(_text(headers.get(b"authorization"))) is not None
            and length is not None
            and length.isdigit()
            and int(length) <= self._max_body
        )

    async def _answer(self, room_id: str, headers: dict[bytes, bytes], body: bytes) -> Any:
        # The order of the Quart route: token, then JSON, then schema, then the use case.
        token = bearer_token(_text(headers.get(b"authorization")))
        if token is None:  # not plain: never routed here, kept for the type checker
            raise Unauthorized("missing bearer token")
        user = await self._authenticate(token)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise _Malformed from exc
        request = SendMessageBody.model_validate(data)
        result = await self._send_message(user.id, room_id, request.body, request.client_msg_id)
        return {"message": message_view(result.message, result.status)}


class _Malformed(Exception):
    """The body is not JSON (Quart answers 400 for that)."""


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


def _retry_after(error: DomainError) -> list[tuple[bytes, bytes]]:
    if not isinstance(error, RateLimited):
        return []
    return [(b"retry-after", str(max(1, math.ceil(error.retry_after))).encode())]


async def _read_body(receive: ASGIReceiveCallable) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            break
        chunks.append(bytes(message.get("body", b"")))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _respond(
    send: ASGISendCallable, status: int, answer: Any, headers: list[tuple[bytes, bytes]]
) -> None:
    body = orjson.dumps(answer) + b"\n"  # as Quart's JSON provider writes it
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *headers,
            *_SECURITY_HEADERS,
        ],
        "trailers": False,
    }
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})
