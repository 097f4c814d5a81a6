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

from chat_domain.entities import MESSAGE_BODY_MAX, User
from chat_domain.errors import Unauthorized
from chat_domain.usecases.seed_compat import INVALID_SESSION
from chat_domain.views import room_view
from chat_server.errors import error_response
from chat_server.http import authenticated, services

API_KEY_HEADER = "X-Api-Key"

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


def _key_refused() -> Any:
    """In ``api-key`` mode, the answer to a caller without the key (None: let it through)."""
    settings = services().settings()
    if settings.seed_compat != "api-key" or settings.seed_token_key is None:
        return None
    given = request.headers.get(API_KEY_HEADER, "")
    expected = settings.seed_token_key.get_secret_value()
    if hmac.compare_digest(given.encode(), expected.encode()):
        return None
    return error_response(401, "unauthorized", f"this route needs the {API_KEY_HEADER} header")


@blueprint.post("/chat-rooms/<room_id>/chat-token")
@validate_request(ChatTokenBody)
async def chat_token(room_id: str, data: ChatTokenBody) -> Any:
    refused = _key_refused()
    if refused is not None:
        return refused
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
    refused = _key_refused()
    if refused is not None:
        return refused
    return await services().list_seed_clients()(room_id)


@rooms_blueprint.post("/<room_id>/join")
@authenticated
async def join(user: User, room_id: str) -> dict[str, Any]:
    room = await services().join_seed_room()(user.id, room_id)
    return {"room": room_view(room)}


def register_seed_routes(app: Quart) -> None:
    app.register_blueprint(blueprint)
    app.register_blueprint(rooms_blueprint)
