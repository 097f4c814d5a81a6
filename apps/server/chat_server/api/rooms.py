"""Rooms, members and receipts."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import validate_request

from chat_domain.entities import MarkerKind, User
from chat_domain.errors import InvalidInput
from chat_domain.views import member_view, room_summary_view, room_view
from chat_server.http import authenticated, services
from chat_server.schemas import AddMemberBody, CreateRoomBody, ReadBody, TransferOwnershipBody

blueprint = Blueprint("rooms", __name__, url_prefix="/rooms")


@blueprint.post("")
@authenticated
@validate_request(CreateRoomBody)
async def create_room(user: User, data: CreateRoomBody) -> tuple[dict[str, Any], int]:
    if data.kind == "direct":
        details, created = await services().open_direct_room()(user.id, data.member_ids)
        return {"room": room_view(details.room, details.members)}, 201 if created else 200
    if data.name is None:
        raise InvalidInput("name: required for a group room")
    details = await services().create_group_room()(user.id, data.name, data.member_ids)
    return {"room": room_view(details.room, details.members)}, 201


@blueprint.get("")
@authenticated
async def list_rooms(user: User) -> dict[str, Any]:
    summaries = await services().list_rooms()(user.id)
    return {"rooms": [room_summary_view(s) for s in summaries]}


@blueprint.get("/<room_id>")
@authenticated
async def get_room(user: User, room_id: str) -> dict[str, Any]:
    details = await services().get_room()(user.id, room_id)
    return {"room": room_view(details.room, details.members)}


@blueprint.post("/<room_id>/members")
@authenticated
@validate_request(AddMemberBody)
async def add_member(user: User, room_id: str, data: AddMemberBody) -> tuple[dict[str, Any], int]:
    member, added = await services().add_member()(user.id, room_id, data.user_id)
    return {"member": member_view(member)}, 201 if added else 200


@blueprint.delete("/<room_id>/members/<user_id>")
@authenticated
async def remove_member(user: User, room_id: str, user_id: str) -> tuple[str, int]:
    await services().remove_member()(user.id, room_id, user_id)
    return "", 204


@blueprint.post("/<room_id>/owner")
@authenticated
@validate_request(TransferOwnershipBody)
async def transfer_ownership(
    user: User, room_id: str, data: TransferOwnershipBody
) -> dict[str, Any]:
    details = await services().transfer_ownership()(user.id, room_id, data.user_id)
    return {"room": room_view(details.room, details.members)}


@blueprint.post("/<room_id>/read")
@authenticated
@validate_request(ReadBody)
async def mark_read(user: User, room_id: str, data: ReadBody) -> tuple[str, int]:
    await services().move_marker()(user.id, room_id, data.seq, MarkerKind.READ)
    return "", 204


@blueprint.get("/<room_id>/receipts")
@authenticated
async def receipts(user: User, room_id: str) -> dict[str, Any]:
    markers = await services().list_receipts()(user.id, room_id)
    return {
        "receipts": [
            {"user_id": m.user_id, "delivered_seq": m.delivered_seq, "read_seq": m.read_seq}
            for m in markers
        ]
    }
