"""HTTP door of chat requests."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query

from server.chats.schemas import ChatRequestCreate, ChatRequestOut, ChatRequestPage
from server.deps import PrincipalDep, ServicesDep

router = APIRouter(prefix="/v1", tags=["chat requests"])


@router.post("/chat-requests", response_model=ChatRequestOut, status_code=201)
async def send_request(
    body: ChatRequestCreate, principal: PrincipalDep, services: ServicesDep
) -> ChatRequestOut:
    """Ask someone to chat; they get `chat_request:new`."""
    return await services.chat_requests.send(
        principal.user_id, str(body.user_id), body.text, body.mode
    )


@router.get("/chat-requests", response_model=ChatRequestPage)
async def list_requests(
    principal: PrincipalDep,
    services: ServicesDep,
    box: Literal["incoming", "outgoing"] = "incoming",
    state: Literal["pending", "accepted", "declined", "cancelled"] | None = None,
    before: Annotated[str | None, Query(max_length=36)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> ChatRequestPage:
    return await services.chat_requests.listing(principal.user_id, box, state, before, limit)


@router.post("/chat-requests/{request_id}/accept", response_model=ChatRequestOut)
async def accept(
    request_id: UUID, principal: PrincipalDep, services: ServicesDep
) -> ChatRequestOut:
    """Accept: the direct conversation opens and both of you get `chat_request:updated`."""
    return await services.chat_requests.accept(principal.user_id, str(request_id))


@router.post("/chat-requests/{request_id}/decline", response_model=ChatRequestOut)
async def decline(
    request_id: UUID, principal: PrincipalDep, services: ServicesDep
) -> ChatRequestOut:
    return await services.chat_requests.decline(principal.user_id, str(request_id))


@router.delete("/chat-requests/{request_id}", response_model=ChatRequestOut)
async def cancel(
    request_id: UUID, principal: PrincipalDep, services: ServicesDep
) -> ChatRequestOut:
    """Withdraw a request you sent that is still pending."""
    return await services.chat_requests.cancel(principal.user_id, str(request_id))
