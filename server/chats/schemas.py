"""Payloads of conversations and messages, for HTTP and socket events alike."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    model_validator,
)

from server.text import FreeText, SingleLine
from server.users.schemas import ProfileCard


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ClientMsgId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
]
ConversationMode = Literal["plaintext", "encrypted"]
Title = Annotated[str, StringConstraints(max_length=128), SingleLine]
Topic = Annotated[str, StringConstraints(max_length=512), SingleLine]
# The hard cap; the configured PARLEY_CHAT_MAX_TEXT_CHARS is checked by the service.
MessageText = Annotated[str, StringConstraints(min_length=1, max_length=100_000), FreeText]
Caption = Annotated[str, StringConstraints(max_length=100_000), FreeText]
MemberIds = Annotated[list[UUID], Field(max_length=1000)]


class OpenDirectRequest(_Strict):
    user_id: UUID = Field(description="The other person")
    mode: ConversationMode = Field(
        default="encrypted",
        description="Fixed at creation. A pair has at most one direct conversation per mode.",
    )


class CreateGroupRequest(_Strict):
    title: Title
    topic: Topic = ""
    mode: ConversationMode = Field(default="encrypted", description="Fixed at creation")
    member_ids: MemberIds = Field(default_factory=list, description="Besides the creator (owner)")


class UpdateConversationRequest(_Strict):
    title: Title | None = None
    topic: Topic | None = None
    avatar_media_id: UUID | None = None
    clear_avatar: bool = False


class AddMembersRequest(_Strict):
    member_ids: Annotated[list[UUID], Field(min_length=1, max_length=1000)]


class SetRoleRequest(_Strict):
    role: Literal["member", "admin", "owner"] = Field(
        description="`owner` hands ownership over; the old owner becomes an admin"
    )


class TextBody(_Strict):
    text: MessageText


class ImageBody(_Strict):
    media_id: UUID
    caption: Caption = ""


class SendMessageRequest(_Strict):
    """Body of ``POST /v1/conversations/{id}/messages``.

    ``kind`` text and image go to plaintext conversations; ``envelope`` (an
    end-to-end-encrypted envelope, docs/PROTOCOL.md) to encrypted ones.
    """

    client_msg_id: ClientMsgId = Field(
        description="Client-chosen idempotency key: a resend returns the first result"
    )
    kind: Literal["text", "image", "envelope"] = "text"
    body: dict[str, Any]

    @model_validator(mode="after")
    def _body_matches_kind(self) -> SendMessageRequest:
        if self.kind == "text":
            TextBody.model_validate(self.body)
        elif self.kind == "image":
            ImageBody.model_validate(self.body)
        return self


class SendMessageEvent(SendMessageRequest):
    """Payload of the ``message:send`` socket event."""

    conversation_id: UUID


class EditMessageEvent(_Strict):
    """Payload of ``message:edit``: the new body, in the original message's kind."""

    conversation_id: UUID
    message_id: UUID
    client_msg_id: ClientMsgId
    body: dict[str, Any]


class DeleteMessageEvent(_Strict):
    conversation_id: UUID
    message_id: UUID
    client_msg_id: ClientMsgId


class ReceiptEvent(_Strict):
    conversation_id: UUID
    seq: Annotated[int, Field(ge=0, le=2**62)]
    kind: Literal["delivered", "read"] = "read"


class TypingEvent(_Strict):
    conversation_id: UUID
    state: Literal["start", "stop"] = "start"


class SyncRequest(_Strict):
    """What the client holds: the last seq it has of each conversation it knows."""

    positions: Annotated[
        dict[UUID, Annotated[int, Field(ge=0, le=2**62)]], Field(max_length=5000)
    ] = Field(default_factory=dict)
    cursor: UUID | None = None
    limit: Annotated[int, Field(ge=1, le=500)] = 100


class MemberOut(BaseModel):
    user_id: str
    role: str


class ConversationOut(BaseModel):
    id: str
    kind: str = Field(description="direct | group")
    mode: str = Field(description="encrypted | plaintext")
    title: str
    topic: str
    avatar_media_id: str | None
    last_seq: int
    read_seq: int = Field(description="Your read mark")
    unread: int = Field(description="Messages after your read mark")
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
    kind: str = Field(description="text | image | envelope | system | edit | delete")
    body: dict[str, Any]
    created_at: datetime
    edited_at: datetime | None = None
    deleted_at: datetime | None = None
    _wire: dict[str, Any] | None = PrivateAttr(default=None)

    def wire(self) -> dict[str, Any]:
        """The JSON form for sockets (the sender's ack and ``message:new``), made once.

        An envelope's body is the sender's JSON as it arrived, checked by
        ``crypto.envelope.parse_envelope`` to hold strings, integers, lists and
        objects only: it goes out as it is rather than walked again (for a
        group of fifty that walk cost ten times the rest of the message).
        """
        if self._wire is None:
            if self.kind == "envelope":
                rest = self.model_dump(mode="json", exclude={"body"})
                # Field order kept: the same JSON text as model_dump's.
                self._wire = {
                    name: self.body if name == "body" else rest[name]
                    for name in type(self).model_fields
                }
            else:
                self._wire = self.model_dump(mode="json")
        return self._wire

    def __eq__(self, other: object) -> bool:
        # The fields only: whether ``wire`` has been made is not part of the message.
        if not isinstance(other, MessageOut):
            return NotImplemented
        return self.__dict__ == other.__dict__


class MessagePage(BaseModel):
    messages: list[MessageOut] = Field(description="Ascending by seq")
    has_more: bool = Field(description="More messages exist in the direction asked")


class ConversationSync(BaseModel):
    conversation_id: str
    last_seq: int
    read_seq: int
    messages: list[MessageOut] = Field(description="After your position, ascending")
    has_more: bool = Field(
        description="For a conversation you listed: more after the last seq returned (ask "
        "again). For one you did not: older messages exist (page back with before_seq)."
    )


class SyncPage(BaseModel):
    conversations: list[ConversationSync] = Field(description="Only those with something new")
    removed: list[str] = Field(description="Conversations you listed and are no longer in")
    next_cursor: str | None


class ReceiptOut(BaseModel):
    conversation_id: str
    user_id: str
    delivered_seq: int
    read_seq: int


class ChatRequestCreate(_Strict):
    user_id: UUID
    text: Annotated[str, StringConstraints(max_length=500), FreeText] = ""
    mode: ConversationMode = Field(
        default="encrypted", description="Mode of the direct conversation an acceptance opens"
    )


class ChatRequestOut(BaseModel):
    id: str
    sender: ProfileCard
    recipient: ProfileCard
    text: str
    mode: str
    state: str = Field(description="pending, accepted, declined or cancelled")
    conversation_id: str | None = Field(description="Set once accepted")
    created_at: datetime
    decided_at: datetime | None


class ChatRequestPage(BaseModel):
    requests: list[ChatRequestOut]
    next_before: str | None
