"""The one place that turns every failure into the contract's error shape.

``{"error": {"code": "...", "message": "...", "details": [...]}}`` whatever produced
it: a domain error, a schema validation error, an unknown path, a 405, a body that
is too large, or a bug (which is logged with its trace and answered without one).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from pydantic import ValidationError
from quart import Quart, Response, jsonify
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from chat_domain.errors import DomainError, RateLimited

log = logging.getLogger("chat.server")

STATUS_BY_CODE = {
    "validation_error": 422,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "payload_too_large": 413,
    "rate_limited": 429,
    "unavailable": 503,
    "internal_error": 500,
}
CODE_BY_HTTP_STATUS = {
    400: "validation_error",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    # The contract's codes have no word for 405; the method on this path does not exist.
    405: "not_found",
    409: "conflict",
    413: "payload_too_large",
    415: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


def error_body(code: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"error": error}


def error_response(
    status: int, code: str, message: str, details: list[Any] | None = None
) -> Response:
    response = jsonify(error_body(code, message, details))
    response.status_code = status
    return response


def describe_validation_error(error: ValidationError) -> tuple[str, list[dict[str, Any]]]:
    details = [
        {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
        for e in error.errors(include_url=False, include_input=False)
    ]
    first = details[0] if details else {"field": "body", "message": "invalid"}
    return f"{first['field']}: {first['message']}", details


def domain_error_answer(error: DomainError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, body and extra headers for a domain error (Quart's handler and the send lane)."""
    headers = {}
    if isinstance(error, RateLimited):
        # Whole seconds, rounded up: a client that waits that long gets a token.
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    status = STATUS_BY_CODE.get(error.code, 400)
    return status, error_body(error.code, error.message, error.details), headers


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(DomainError)
    async def domain_error(error: DomainError) -> Response:
        status, body, headers = domain_error_answer(error)
        response = jsonify(body)
        response.status_code = status
        response.headers.update(headers)
        return response

    @app.errorhandler(RequestSchemaValidationError)
    async def schema_error(error: RequestSchemaValidationError) -> Response:
        cause = error.validation_error
        if isinstance(cause, ValidationError):
            message, details = describe_validation_error(cause)
            return error_response(422, "validation_error", message, details)
        return error_response(422, "validation_error", str(cause) or "invalid request")

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status == 400:
            message = "malformed JSON body"
        elif status == 405:
            message = "method not allowed on this path"
        elif status == 413:
            message = f"request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes"
        else:
            message = error.description or error.name
        response = error_response(status, CODE_BY_HTTP_STATUS.get(status, "error"), message)
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            response.headers["Allow"] = ", ".join(sorted(error.valid_methods))
        return response

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        # The trace goes to the log, never to the client.
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error")
