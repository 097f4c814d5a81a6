"""The server API: what the app's backend calls, with an API key instead of a user's token
(``Authorization: Bearer <key>`` or ``X-API-Key: <key>``), each route needing one scope."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from quart import Blueprint, request
from quart_schema import security_scheme, validate_querystring, validate_request

from chat_domain.entities import Scope
from chat_domain.ports.security import AppIdentity
from chat_domain.views import message_view, room_view, user_view
from chat_server.http import bearer_token, services
from chat_server.schemas import (
    HistoryQuery,
    ServerCreateRoomBody,
    ServerPostBody,
    SetMembersBody,
    UpsertUserBody,
)

blueprint = Blueprint("server", __name__, url_prefix="/server")

P = ParamSpec("P")
R = TypeVar("R")
API_KEY_SCHEMES: list[dict[str, list[str]]] = [{"apiKeyBearer": []}, {"apiKeyHeader": []}]
# Which scope each route needs (also the docs' and the tests' authorisation matrix).
SCOPE_OF: dict[str, Scope] = {}


def with_api_key(
    scope: Scope,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Check the call's API key (known, not revoked, within its rate, holding ``scope``)
    before the view runs."""

    def decorate(view: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        SCOPE_OF[f"api.server.{view.__name__}"] = scope

        @wraps(view)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            key = request.headers.get("X-API-Key") or bearer_token(
                request.headers.get("Authorization")
            )
            await services().authenticate_api_key()(key, scope)
            return await view(*args, **kwargs)

        return security_scheme(API_KEY_SCHEMES)(wrapper)

    return decorate


@blueprint.post("/users")
@with_api_key(Scope.USERS_WRITE)
@validate_request(UpsertUserBody)
async def upsert_user(data: UpsertUserBody) -> tuple[dict[str, Any], int]:
    user, created = await services().provision_app_user()(
        AppIdentity(data.sub, data.display_name), strict=True
    )
    return {"user": user_view(user)}, 201 if created else 200


@blueprint.post("/users/<user_id>/deactivate")
@with_api_key(Scope.USERS_WRITE)
async def deactivate_user(user_id: str) -> dict[str, Any]:
    # Their tokens and sockets end on every node within CHAT_SESSION_RECHECK_SECONDS.
    user = await services().deactivate_user().by_id(user_id)
    return {"user": user_view(user)}


@blueprint.post("/rooms")
@with_api_key(Scope.ROOMS_WRITE)
@validate_request(ServerCreateRoomBody)
async def create_room(data: ServerCreateRoomBody) -> tuple[dict[str, Any], int]:
    details = await services().create_server_room()(data.owner_id, data.name, data.member_ids)
    return {"room": room_view(details.room, details.members)}, 201


@blueprint.put("/rooms/<room_id>/members")
@with_api_key(Scope.ROOMS_WRITE)
@validate_request(SetMembersBody)
async def set_members(room_id: str, data: SetMembersBody) -> dict[str, Any]:
    details = await services().set_room_members()(room_id, data.member_ids)
    return {"room": room_view(details.room, details.members)}


@blueprint.post("/rooms/<room_id>/messages")
@with_api_key(Scope.MESSAGES_WRITE)
@validate_request(ServerPostBody)
async def post_message(room_id: str, data: ServerPostBody) -> tuple[dict[str, Any], int]:
    # 202: the broker confirmed it has the message; a worker stores it and fans it out.
    result = await services().post_server_message()(
        room_id, data.body, data.client_msg_id, data.sender_id
    )
    return {"message": message_view(result.message, result.status)}, 202


@blueprint.get("/rooms/<room_id>/messages")
@with_api_key(Scope.MESSAGES_READ)
@validate_querystring(HistoryQuery)
async def history(room_id: str, query_args: HistoryQuery) -> dict[str, Any]:
    messages, has_more = await services().read_room_history()(
        room_id,
        after_seq=query_args.after_seq,
        before_seq=query_args.before_seq,
        limit=query_args.limit,
    )
    return {"messages": [message_view(m) for m in messages], "has_more": has_more}
