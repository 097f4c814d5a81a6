"""The caller, the user directory, and the caller's blocks."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import validate_querystring

from chat_domain.entities import User
from chat_domain.views import block_view, user_view
from chat_server.http import authenticated, services
from chat_server.schemas import UserSearchQuery

blueprint = Blueprint("users", __name__, url_prefix="/users")


@blueprint.get("/me")
@authenticated
async def me(user: User) -> dict[str, Any]:
    return {"user": user_view(user)}


@blueprint.get("")
@authenticated
@validate_querystring(UserSearchQuery)
async def search(user: User, query_args: UserSearchQuery) -> dict[str, Any]:
    found = await services().search_users()(query_args.q)
    return {"users": [user_view(u) for u in found]}


@blueprint.get("/me/blocks")
@authenticated
async def blocks(user: User) -> dict[str, Any]:
    found = await services().list_blocks()(user.id)
    return {"blocks": [block_view(b) for b in found]}


@blueprint.post("/<user_id>/block")
@authenticated
async def block(user: User, user_id: str) -> tuple[dict[str, Any], int]:
    blocked, created = await services().block_user()(user.id, user_id)
    return {"block": block_view(blocked)}, 201 if created else 200


@blueprint.delete("/<user_id>/block")
@authenticated
async def unblock(user: User, user_id: str) -> tuple[str, int]:
    await services().unblock_user()(user.id, user_id)
    return "", 204
