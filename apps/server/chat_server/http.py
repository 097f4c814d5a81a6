"""HTTP plumbing: lenient JSON bodies, orjson responses, and the caller's identity."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson
from quart import Request, current_app, g, request
from quart.json.provider import DefaultJSONProvider
from quart_schema import security_scheme

from chat_bootstrap.container import Container
from chat_domain.entities import User
from chat_domain.errors import Unauthorized

P = ParamSpec("P")
R = TypeVar("R")


class ChatRequest(Request):
    """Reads the body as JSON whatever its Content-Type: `curl -d '{...}'` just works."""

    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        try:
            return await super().get_json(force=True, silent=silent, cache=cache)
        except UnicodeDecodeError as exc:
            # Quart decodes the body as UTF-8 before parsing and lets this escape (a 500);
            # bytes that are not UTF-8 are malformed JSON like any other: a 400.
            if silent:
                return None
            return self.on_json_loading_failed(exc)


class OrjsonProvider(DefaultJSONProvider):
    """orjson for request and response bodies: the REST hot path serialises a lot of JSON."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, default=self.default).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)


def services() -> Container:
    """The process's container, for the request being served."""
    container: Container = current_app.extensions["chat.container"]
    return container


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def current_user() -> User:
    if "user" not in g:
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            raise Unauthorized("missing bearer token")
        g.user = await services().authenticate()(token)
    user: User = g.user
    return user


def authenticated(
    view: Callable[Concatenate[User, P], Awaitable[R]],
) -> Callable[P, Awaitable[R]]:
    """Resolve the bearer token before the view runs and pass the user first."""

    @wraps(view)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return await view(await current_user(), *args, **kwargs)

    # The OpenAPI document marks exactly the routes that take a bearer token.
    return security_scheme([{"bearerAuth": []}])(wrapper)
