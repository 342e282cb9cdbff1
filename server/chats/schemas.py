"""Payloads of conversations and messages, for HTTP and socket events alike."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from server.text import FreeText

# The hard cap; the configured PARLEY_CHAT_MAX_TEXT_CHARS is checked by the service.
MessageText = Annotated[str, StringConstraints(min_length=1, max_length=100_000), FreeText]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ClientMsgId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
]


ConversationMode = Literal["plaintext", "encrypted"]


class OpenDirectRequest(_Strict):
    user_id: UUID = Field(description="The other person")
    mode: ConversationMode = Field(
        default="plaintext",
        description="Fixed at creation. A pair has at most one direct conversation per mode.",
    )


class TextBody(_Strict):
    text: MessageText


class SendMessageRequest(_Strict):
    """Body of ``POST /v1/conversations/{id}/messages``."""

    client_msg_id: ClientMsgId = Field(
        description="Client-chosen idempotency key: a resend returns the first result"
    )
    kind: Literal["text"] = "text"
    body: TextBody


class SendMessageEvent(SendMessageRequest):
    """Payload of the ``message:send`` socket event."""

    conversation_id: UUID


class MemberOut(BaseModel):
    user_id: str
    role: str


class ConversationOut(BaseModel):
    id: str
    kind: str
    mode: str
    title: str
    last_seq: int
    members: list[MemberOut]
    created_at: datetime


class ConversationPage(BaseModel):
    conversations: list[ConversationOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")


class MessageOut(BaseModel):
    id: str
    conversation_id: str
    seq: int
    sender_id: str | None
    client_msg_id: str
    kind: str
    body: dict[str, Any]
    created_at: datetime
    edited_at: datetime | None = None
    deleted_at: datetime | None = None


class MessagePage(BaseModel):
    messages: list[MessageOut] = Field(description="Ascending by seq")
    has_more: bool = Field(description="More messages exist in the direction asked")
