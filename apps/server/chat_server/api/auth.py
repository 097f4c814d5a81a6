"""Register and log in."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import validate_request

from chat_domain.errors import Forbidden
from chat_domain.views import user_view
from chat_server.http import services
from chat_server.limits import client_address, throttle_auth
from chat_server.schemas import LoginBody, RegisterBody

blueprint = Blueprint("auth", __name__, url_prefix="/auth")


def require_accounts() -> None:
    """With CHAT_AUTH_MODE=app the app alone vouches for users: our own accounts are off,
    and a token of ours would be refused anyway."""
    if services().settings().auth_mode == "app":
        raise Forbidden("accounts are off here: sign in through the app (CHAT_AUTH_MODE=app)")


@blueprint.post("/register")
@validate_request(RegisterBody)
async def register(data: RegisterBody) -> tuple[dict[str, Any], int]:
    require_accounts()
    await throttle_auth("register", data.username)
    user = await services().register_user()(data.username, data.password, data.display_name)
    return {"user": user_view(user)}, 201


@blueprint.post("/login")
@validate_request(LoginBody)
async def login(data: LoginBody) -> dict[str, Any]:
    require_accounts()
    await throttle_auth("login")
    session = await services().log_in()(data.username, data.password, client_address())
    return {
        "access_token": session.token.token,
        "token_type": "bearer",
        "expires_in": session.token.expires_in,
        "user": user_view(session.user),
    }
