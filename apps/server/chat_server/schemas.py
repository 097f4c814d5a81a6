"""Request models: they validate bodies and query strings, and the OpenAPI document is built
from them. Rules of the domain (lengths, patterns) are taken from the domain, not repeated."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from chat_domain.entities import (
    DISPLAY_NAME_MAX,
    MESSAGE_BODY_MAX,
    PASSWORD_MAX,
    PASSWORD_MIN,
    ROOM_NAME_MAX,
)
from chat_domain.usecases.app_users import SUBJECT_MAX
from chat_domain.usecases.messages import CLIENT_MSG_ID_MAX, PAGE_LIMIT_MAX


class Body(BaseModel):
    # JSON bodies: no silent "5" -> 5 coercion; unknown fields are ignored (forward compatible).
    model_config = ConfigDict(strict=True, extra="ignore")


class RegisterBody(Body):
    username: str = Field(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9_.\-]+$")
    password: str = Field(
        min_length=PASSWORD_MIN,
        max_length=PASSWORD_MAX,
        description="Not the username nor containing it, and not a very common password "
        "(422 validation_error otherwise).",
    )
    display_name: str | None = Field(default=None, max_length=DISPLAY_NAME_MAX)


class LoginBody(Body):
    username: str = Field(max_length=64)
    password: str = Field(max_length=PASSWORD_MAX)


class CreateRoomBody(Body):
    kind: Literal["group", "direct"] = "group"
    name: str | None = Field(default=None, max_length=ROOM_NAME_MAX * 2)
    member_ids: list[str] = Field(default_factory=list, max_length=1000)


class AddMemberBody(Body):
    user_id: str = Field(min_length=1, max_length=64)


class TransferOwnershipBody(Body):
    user_id: str = Field(min_length=1, max_length=64)


class SendMessageBody(Body):
    body: str = Field(max_length=MESSAGE_BODY_MAX * 2)
    client_msg_id: str | None = Field(default=None, min_length=1, max_length=CLIENT_MSG_ID_MAX)


class EditMessageBody(Body):
    body: str = Field(max_length=MESSAGE_BODY_MAX * 2)


class ReadBody(Body):
    seq: int = Field(ge=0)


class UserSearchQuery(BaseModel):
    q: str = Field(default="", max_length=32)


class HistoryQuery(BaseModel):
    after_seq: int | None = Field(default=None, ge=0)
    before_seq: int | None = Field(default=None, ge=0)
    limit: int | None = Field(default=None, ge=1, le=PAGE_LIMIT_MAX)


# --- the server API (the app's backend, with an API key) --------------------------------


class UpsertUserBody(Body):
    sub: str = Field(
        min_length=1,
        max_length=SUBJECT_MAX,
        description="The app's own id for the user: the `sub` of the tokens it issues them.",
    )
    display_name: str | None = Field(default=None, max_length=DISPLAY_NAME_MAX * 2)


class ServerCreateRoomBody(Body):
    name: str = Field(max_length=ROOM_NAME_MAX * 2)
    owner_id: str = Field(min_length=1, max_length=64, description="Who owns the room.")
    member_ids: list[str] = Field(default_factory=list, max_length=1000)


class SetMembersBody(Body):
    member_ids: list[str] = Field(
        max_length=1000, description="Every member the room is to have, its owner included."
    )


class ServerPostBody(Body):
    body: str = Field(max_length=MESSAGE_BODY_MAX * 2)
    client_msg_id: str | None = Field(default=None, min_length=1, max_length=CLIENT_MSG_ID_MAX)
    sender_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="A member to post as; omitted: the system sender (any room).",
    )
