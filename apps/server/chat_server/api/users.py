"""The caller and the user directory."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import validate_querystring

from chat_domain.entities import User
from chat_domain.views import user_view
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
