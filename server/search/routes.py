"""HTTP door of search and the event log."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query

from server.deps import PrincipalDep, ServicesDep
from server.search.schemas import EventStatus, MessageSearchPage, PeoplePage
from server.search.service import MAX_OFFSET, MAX_QUERY

router = APIRouter(prefix="/v1", tags=["search"])

Limit = Annotated[int, Query(ge=1, le=100)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]


@router.get("/users/search", response_model=PeoplePage)
async def search_people(
    principal: PrincipalDep,
    services: ServicesDep,
    q: Annotated[
        str, Query(max_length=MAX_QUERY, description="Name or nickname; typos are fine")
    ] = "",
    interests: Annotated[
        str, Query(max_length=20 * 33, description="Comma-separated slugs (GET /v1/interests)")
    ] = "",
    limit: Limit = 20,
    offset: Offset = 0,
) -> PeoplePage:
    """People by shared interests (most first), then by how well the name matches.

    Without `interests`, the interests on your profile are used: with `q` to
    rank the name matches, alone to find people like you.
    """
    slugs = [s.strip() for s in interests.split(",") if s.strip()]
    return await services.search.people(principal.user_id, q, slugs, limit, offset)


@router.get("/search/messages", response_model=MessageSearchPage)
async def search_messages(
    principal: PrincipalDep,
    services: ServicesDep,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY)],
    conversation_id: UUID | None = None,
    limit: Limit = 20,
    offset: Offset = 0,
) -> MessageSearchPage:
    """Fuzzy search over your plaintext conversations (encrypted ones are never indexed)."""
    return await services.search.messages(
        principal.user_id, q, str(conversation_id) if conversation_id else None, limit, offset
    )


@router.get("/events/{event_id}", response_model=EventStatus)
async def event_status(
    event_id: Annotated[int, Path(ge=1, le=2**62)], principal: PrincipalDep, services: ServicesDep
) -> EventStatus:
    """Whether a write (its `event_id`) is visible in search and contact matching yet."""
    return await services.search.event(event_id)
