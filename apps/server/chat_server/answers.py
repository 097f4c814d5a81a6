"""Response models: used only to document the answers in the OpenAPI document.

The views build their JSON with chat_domain.views; these models describe those shapes
for clients (and for the schemathesis fuzz test, which reads them). The e2e test of
the OpenAPI document checks that every REST operation documents its success answer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, RootModel


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[object] | None = None


class ErrorAnswer(BaseModel):
    """Every error, whatever produced it: {"error": {"code", "message", "details"?}}."""

    error: ErrorDetail


class UserOut(BaseModel):
    id: str
    username: str
    display_name: str | None
    created_at: str


class UserAnswer(BaseModel):
    """The user."""

    user: UserOut


class LoginAnswer(BaseModel):
    """A bearer token for the Authorization header, and the user."""

    access_token: str
    token_type: Literal["bearer"]
    expires_in: int
    user: UserOut


class UsersAnswer(BaseModel):
    """Users whose username starts with the prefix (at most 20)."""

    users: list[UserOut]


class BlockOut(BaseModel):
    user_id: str
    username: str
    created_at: str


class BlockAnswer(BaseModel):
    """The block: the blocked user and since when."""

    block: BlockOut


class BlocksAnswer(BaseModel):
    """The users the caller blocks, oldest block first."""

    blocks: list[BlockOut]


class MemberOut(BaseModel):
    user_id: str
    username: str
    role: Literal["owner", "member"]
    joined_at: str


class MemberAnswer(BaseModel):
    """The membership."""

    member: MemberOut


class RoomOut(BaseModel):
    id: str
    name: str | None
    kind: Literal["group", "direct"]
    created_at: str
    last_seq: int
    members: list[MemberOut] | None = None


class RoomAnswer(BaseModel):
    """The room, with its members."""

    room: RoomOut


class MessageOut(BaseModel):
    id: str
    room_id: str
    seq: int | None
    sender_id: str
    body: str
    client_msg_id: str | None
    created_at: str
    edited_at: str | None
    deleted: bool
    status: Literal["accepted", "stored", "delivered", "read"] | None = None


class MessageAnswer(BaseModel):
    """The message (on a send: status "accepted", seq null until a worker stores it)."""

    message: MessageOut


class RoomSummaryOut(RoomOut):
    last_message: MessageOut | None
    unread_count: int


class RoomsAnswer(BaseModel):
    """The caller's rooms, most recent activity first."""

    rooms: list[RoomSummaryOut]


class MessagesPage(BaseModel):
    """A page of messages in ascending seq."""

    messages: list[MessageOut]
    has_more: bool


class ReceiptOut(BaseModel):
    user_id: str
    delivered_seq: int
    read_seq: int


class ReceiptsAnswer(BaseModel):
    """Each member's delivered and read markers."""

    receipts: list[ReceiptOut]


class HealthAnswer(BaseModel):
    """The process serves."""

    status: Literal["ok"]


class ReadinessAnswer(BaseModel):
    """Each backing service's state; 503 names the failing ones (and has the error shape)."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, str]
    failing: list[str] | None = None
    error: ErrorDetail | None = None


class ChatTokenAnswer(BaseModel):
    """A seed token naming the client in the room (the seed's API)."""

    token: str


class SeedClientsAnswer(RootModel[list[str]]):
    """The clientIds of the room's seed clients (the seed's API)."""
