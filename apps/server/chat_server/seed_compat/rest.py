"""The seed's REST routes, and the one that lets our users into a seed room.

The seed's routes answer as the seed did: a token, an empty 200 for a send, 400
``invalid session token``; errors keep our JSON shape (a seed client reads the status).
"""

from __future__ import annotations

import hmac
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Quart, request
from quart_schema import validate_request

from chat_domain.entities import MESSAGE_BODY_MAX, Scope, User
from chat_domain.errors import Unauthorized
from chat_domain.usecases.seed_compat import INVALID_SESSION
from chat_domain.views import room_view
from chat_server.errors import error_response
from chat_server.http import authenticated, services

API_KEY_HEADER = "X-API-Key"  # as the server API's

blueprint = Blueprint("seed", __name__)
# Ours, under /api/v1: an authenticated user of ours joins a seed room.
rooms_blueprint = Blueprint("seed_rooms", __name__, url_prefix="/api/v1/seed-rooms")


class SeedBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class ChatTokenBody(SeedBody):
    clientId: str = Field(min_length=1, max_length=256)


class ChatMessageBody(SeedBody):
    content: str = Field(max_length=MESSAGE_BODY_MAX * 2)
    token: str = Field(max_length=4096)


async def require_seed_key(scope: Scope) -> None:
    """In ``api-key`` mode, the caller's ``X-API-Key`` must be ``CHAT_SEED_TOKEN_KEY`` or a
    server API key holding ``scope`` (else ``Unauthorized``, ``Forbidden``, ``RateLimited``
    as the server API answers them)."""
    settings = services().settings()
    if settings.seed_compat != "api-key":
        return
    given = request.headers.get(API_KEY_HEADER, "")
    shared = settings.seed_token_key
    if shared is not None and hmac.compare_digest(
        given.encode(), shared.get_secret_value().encode()
    ):
        return
    await services().authenticate_api_key()(given or None, scope)


@blueprint.post("/chat-rooms/<room_id>/chat-token")
@validate_request(ChatTokenBody)
async def chat_token(room_id: str, data: ChatTokenBody) -> Any:
    # Issuing a token makes a user (and a room): the server API's users:write.
    await require_seed_key(Scope.USERS_WRITE)
    return {"token": await services().issue_seed_token()(room_id, data.clientId)}


@blueprint.post("/chat-messages")
@validate_request(ChatMessageBody)
async def chat_message(data: ChatMessageBody) -> Any:
    try:
        await services().send_seed_message()(data.token, data.content)
    except Unauthorized:
        return error_response(400, "invalid_session_token", INVALID_SESSION)
    # The broker has it (our 202); the seed answered 200 with nothing.
    return "", 200


@blueprint.get("/chat-rooms/<room_id>/clients")
async def chat_clients(room_id: str) -> Any:
    await require_seed_key(Scope.MESSAGES_READ)
    return await services().list_seed_clients()(room_id)


@rooms_blueprint.post("/<room_id>/join")
@authenticated
async def join(user: User, room_id: str) -> dict[str, Any]:
    room = await services().join_seed_room()(user.id, room_id)
    return {"room": room_view(room)}


def register_seed_routes(app: Quart) -> None:
    app.register_blueprint(blueprint)
    app.register_blueprint(rooms_blueprint)
