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
from chat_domain.errors import DomainError
from chat_domain.views import message_view
from chat_server.errors import describe_validation_error, domain_error_answer, error_body
from chat_server.http import bearer_token
from chat_server.observability import REQUEST_ID_HEADER, record_request, request_id_from
from chat_server.schemas import SendMessageBody
from chat_server.security import SECURITY_HEADERS

# \Z, not $: "$" also matches before a final "\n" ("%0A"), a path Quart does not route.
SEND_PATH = re.compile(r"^/api/v1/rooms/([^/]+)/messages\Z")
ROUTE = "/api/v1/rooms/<room_id>/messages"  # Quart's rule: one metrics label for both ways
server_log = logging.getLogger("chat.server")

# What chat_server.security adds to every answer (no CORS: requests with Origin go to Quart).
_SECURITY_HEADERS = [
    *((name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()),
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
        token = self._plain_token(headers) if match else None
        if match is None or token is None:
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from(_text(headers.get(REQUEST_ID_HEADER.lower().encode())))
        REQUEST_ID.set(request_id)
        body = await _read_body(receive)
        extra: dict[str, str] = {}
        try:
            status, answer = 202, await self._answer(match[1], token, body)
        except DomainError as error:
            status, answer, extra = domain_error_answer(error)
        except _Malformed:
            status, answer = 400, error_body("validation_error", "malformed JSON body")
        except ValidationError as error:
            message, details = describe_validation_error(error)
            status, answer = 422, error_body("validation_error", message, details)
        except Exception:
            server_log.exception("unhandled error")  # the trace goes to the log only
            status, answer = 500, error_body("internal_error", "internal error")
        extra[REQUEST_ID_HEADER] = request_id
        await _respond(send, status, answer, extra)
        record_request("POST", ROUTE, scope["path"], status, time.perf_counter() - started)

    def _plain_token(self, headers: dict[bytes, bytes]) -> str | None:
        """The bearer token of a plain send; None sends the request to Quart."""
        length = headers.get(b"content-length")
        if (
            b"origin" in headers
            or b"transfer-encoding" in headers
            or length is None
            or not length.isdigit()
            or int(length) > self._max_body
        ):
            return None
        return bearer_token(_text(headers.get(b"authorization")))

    async def _answer(self, room_id: str, token: str, body: bytes) -> Any:
        # The order of the Quart route: token, then JSON, then schema, then the use case.
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
    send: ASGISendCallable, status: int, answer: Any, headers: dict[str, str]
) -> None:
    body = orjson.dumps(answer) + b"\n"  # as Quart's JSON provider writes it
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((name.lower().encode(), value.encode()) for name, value in headers.items()),
            *_SECURITY_HEADERS,
        ],
        "trailers": False,
    }
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})
