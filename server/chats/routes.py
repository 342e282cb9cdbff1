"""HTTP door of conversations and messages."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from server.chats.schemas import (
    ConversationOut,
    ConversationPage,
    MessageOut,
    MessagePage,
    OpenDirectRequest,
    SendMessageRequest,
)
from server.deps import PrincipalDep, ServicesDep

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


@router.post("/direct", response_model=ConversationOut)
async def open_direct_conversation(
    body: OpenDirectRequest, principal: PrincipalDep, services: ServicesDep
) -> ConversationOut:
    """The direct conversation with another user, created on first use (one per pair)."""
    return await services.chats.open_direct(principal.user_id, str(body.user_id), body.mode)


@router.get("", response_model=ConversationPage)
async def list_conversations(
    principal: PrincipalDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> ConversationPage:
    """The conversations the user is a member of, paged."""
    return await services.chats.list_conversations(principal.user_id, limit=limit, cursor=cursor)


@router.get("/{conversation_id}", response_model=ConversationOut)
async def get_conversation(
    conversation_id: UUID, principal: PrincipalDep, services: ServicesDep
) -> ConversationOut:
    """One conversation the user is a member of."""
    return await services.chats.get_conversation(principal.user_id, str(conversation_id))


@router.get("/{conversation_id}/messages", response_model=MessagePage)
async def list_messages(
    conversation_id: UUID,
    principal: PrincipalDep,
    services: ServicesDep,
    before_seq: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    after_seq: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> MessagePage:
    """History, ascending by seq: the newest page, or before/after a seq."""
    return await services.chats.history(
        principal.user_id,
        str(conversation_id),
        before_seq=before_seq,
        after_seq=after_seq,
        limit=limit,
    )


@router.post("/{conversation_id}/messages", response_model=MessageOut)
async def send_message(
    conversation_id: UUID, body: SendMessageRequest, principal: PrincipalDep, services: ServicesDep
) -> MessageOut:
    """Send a message (the same path as the `message:send` socket event)."""
    return await services.chats.send_message(
        principal.user_id, str(conversation_id), body.client_msg_id, body.kind, body.body
    )
