"""Send, page, edit and delete messages."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import validate_querystring, validate_request

from chat_domain.entities import User
from chat_domain.views import message_view
from chat_server.http import authenticated, services
from chat_server.schemas import EditMessageBody, HistoryQuery, SendMessageBody

blueprint = Blueprint("messages", __name__, url_prefix="/rooms/<room_id>/messages")


@blueprint.post("")
@authenticated
@validate_request(SendMessageBody)
async def send(user: User, room_id: str, data: SendMessageBody) -> tuple[dict[str, Any], int]:
    # 202: the broker confirmed it has the message; a worker stores it and fans it out.
    result = await services().send_message()(user.id, room_id, data.body, data.client_msg_id)
    return {"message": message_view(result.message, result.status)}, 202


@blueprint.get("")
@authenticated
@validate_querystring(HistoryQuery)
async def history(user: User, room_id: str, query_args: HistoryQuery) -> dict[str, Any]:
    page = await services().list_history()(
        user.id,
        room_id,
        after_seq=query_args.after_seq,
        before_seq=query_args.before_seq,
        limit=query_args.limit,
    )
    return {
        "messages": [message_view(m, page.status_of(m)) for m in page.messages],
        "has_more": page.has_more,
    }


@blueprint.patch("/<message_id>")
@authenticated
@validate_request(EditMessageBody)
async def edit(user: User, room_id: str, message_id: str, data: EditMessageBody) -> dict[str, Any]:
    message = await services().edit_message()(user.id, room_id, message_id, data.body)
    return {"message": message_view(message)}


@blueprint.delete("/<message_id>")
@authenticated
async def delete(user: User, room_id: str, message_id: str) -> tuple[str, int]:
    await services().delete_message()(user.id, room_id, message_id)
    return "", 204
