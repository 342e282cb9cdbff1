"""HTTP door of conversations and messages."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Response

from config.errors import InvalidRequestError
from server.chats.access import parse_id
from server.chats.schemas import (
    AddMembersRequest,
    ConversationOut,
    ConversationPage,
    CreateGroupRequest,
    MessageOut,
    MessagePage,
    OpenDirectRequest,
    SendMessageRequest,
    SetRoleRequest,
    SyncPage,
    SyncRequest,
    UpdateConversationRequest,
)
from server.deps import PrincipalDep, ServicesDep

router = APIRouter(prefix="/v1", tags=["conversations"])


@router.post("/conversations/direct", response_model=ConversationOut)
async def open_direct_conversation(
    body: OpenDirectRequest, principal: PrincipalDep, services: ServicesDep
) -> ConversationOut:
    """The direct conversation with another user in a mode, created on first use."""
    return await services.conversations.open_direct(principal.user_id, str(body.user_id), body.mode)


@router.post("/conversations/groups", response_model=ConversationOut, status_code=201)
async def create_group(
    body: CreateGroupRequest, principal: PrincipalDep, services: ServicesDep
) -> ConversationOut:
    """A group owned by its creator."""
    return await services.conversations.create_group(
        principal.user_id,
        title=body.title,
        topic=body.topic,
        mode=body.mode,
        member_ids=[str(m) for m in body.member_ids],
    )


@router.get("/conversations", response_model=ConversationPage)
async def list_conversations(
    principal: PrincipalDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> ConversationPage:
    """The conversations the user is a member of, with unread counts, paged."""
    return await services.conversations.list_for(principal.user_id, limit=limit, cursor=cursor)


@router.get("/conversations/{conversation_id}", response_model=ConversationOut)
async def get_conversation(
    conversation_id: UUID, principal: PrincipalDep, services: ServicesDep
) -> ConversationOut:
    """One conversation the user is a member of."""
    return await services.conversations.get(principal.user_id, str(conversation_id))


@router.patch("/conversations/{conversation_id}", response_model=ConversationOut)
async def update_conversation(
    conversation_id: UUID,
    body: UpdateConversationRequest,
    principal: PrincipalDep,
    services: ServicesDep,
) -> ConversationOut:
    """Rename a group, set its topic or avatar (admins and the owner)."""
    changes: dict[str, Any] = body.model_dump(exclude_none=True, exclude={"clear_avatar"})
    if body.clear_avatar:
        changes["avatar_media_id"] = None
    return await services.conversations.update(principal.user_id, str(conversation_id), changes)


@router.post("/conversations/{conversation_id}/members", response_model=ConversationOut)
async def add_members(
    conversation_id: UUID, body: AddMembersRequest, principal: PrincipalDep, services: ServicesDep
) -> ConversationOut:
    """Add people to a group (admins and the owner)."""
    return await services.conversations.add_members(
        principal.user_id, str(conversation_id), [str(m) for m in body.member_ids]
    )


@router.delete("/conversations/{conversation_id}/members/{user_id}", status_code=204)
async def remove_member(
    conversation_id: UUID, user_id: UUID, principal: PrincipalDep, services: ServicesDep
) -> Response:
    """Remove someone from a group; to leave, remove yourself."""
    if str(user_id) == principal.user_id:
        await services.conversations.leave(principal.user_id, str(conversation_id))
    else:
        await services.conversations.remove_member(
            principal.user_id, str(conversation_id), str(user_id)
        )
    return Response(status_code=204)


@router.put(
    "/conversations/{conversation_id}/members/{user_id}/role", response_model=ConversationOut
)
async def set_role(
    conversation_id: UUID,
    user_id: UUID,
    body: SetRoleRequest,
    principal: PrincipalDep,
    services: ServicesDep,
) -> ConversationOut:
    """Make a member an admin or back, or hand ownership over (the owner)."""
    return await services.conversations.set_role(
        principal.user_id, str(conversation_id), str(user_id), body.role
    )


@router.get("/conversations/{conversation_id}/messages", response_model=MessagePage)
async def list_messages(
    conversation_id: UUID,
    principal: PrincipalDep,
    services: ServicesDep,
    before_seq: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    after_seq: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> MessagePage:
    """History, ascending by seq: the newest page, or before/after a seq."""
    return await services.messages.history(
        principal.user_id,
        str(conversation_id),
        before_seq=before_seq,
        after_seq=after_seq,
        limit=limit,
    )


@router.post("/conversations/{conversation_id}/messages", response_model=MessageOut)
async def send_message(
    conversation_id: UUID, body: SendMessageRequest, principal: PrincipalDep, services: ServicesDep
) -> MessageOut:
    """Send a message (the same path as the `message:send` socket event)."""
    return await services.messages.send(
        principal.user_id, str(conversation_id), body.client_msg_id, body.kind, body.body
    )


@router.get("/sync", response_model=SyncPage)
async def sync_get(
    principal: PrincipalDep,
    services: ServicesDep,
    positions: Annotated[
        str, Query(max_length=200 * 60, description="`conversation_id:last_seq`, comma-separated")
    ] = "",
    cursor: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> SyncPage:
    """The same as POST /v1/sync, with up to 200 positions in the query string."""
    parsed: dict[str, int] = {}
    for item in filter(None, positions.split(",")):
        cid, _, seq = item.partition(":")
        if not (seq.isascii() and seq.isdigit()) or len(seq) > 18:
            raise InvalidRequestError(f"positions: {item!r} is not conversation_id:last_seq")
        parsed[str(parse_id(cid, "positions"))] = int(seq)
    if len(parsed) > 200:
        raise InvalidRequestError("positions: at most 200 here; POST /v1/sync takes more")
    return await services.messages.sync(
        principal.user_id,
        parsed,
        cursor=str(cursor) if cursor else None,
        conversations_per_page=50,
        messages_per_conversation=limit,
    )


@router.post("/sync", response_model=SyncPage)
async def sync(body: SyncRequest, principal: PrincipalDep, services: ServicesDep) -> SyncPage:
    """What you missed: messages after your last seq of each conversation, paged."""
    return await services.messages.sync(
        principal.user_id,
        {str(k): v for k, v in body.positions.items()},
        cursor=str(body.cursor) if body.cursor else None,
        conversations_per_page=50,
        messages_per_conversation=body.limit,
    )
