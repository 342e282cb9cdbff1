"""HTTP door of contacts: the address book, matches, and contacts' status updates."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from server.contacts.schemas import (
    AddressBook,
    AddressBookChange,
    ContactList,
    ContactOut,
    Match,
    MatchResult,
)
from server.contacts.service import Normalized
from server.deps import PrincipalDep, ServicesDep
from server.users.schemas import ProfileCard, StatusChangePage

router = APIRouter(prefix="/v1", tags=["contacts"])


def _result(matches: list[tuple[ProfileCard, list[int]]], found: Normalized) -> MatchResult:
    return MatchResult(
        matches=[Match(contact=card, indexes=indexes) for card, indexes in matches],
        stored=len(found.hashes),
        invalid=found.invalid,
    )


@router.put("/contacts", response_model=MatchResult)
async def put_contacts(
    body: AddressBook, principal: PrincipalDep, services: ServicesDep
) -> MatchResult:
    """Replace your address book; the people in it who use Parley.

    Numbers are normalized to E.164 (with `region` for local ones) and kept
    only as keyed hashes. When someone with one of these numbers joins later,
    you get `contact:joined`.
    """
    matches, found = await services.contacts.replace(principal.user_id, body.numbers, body.region)
    return _result(matches, found)


@router.patch("/contacts", response_model=MatchResult)
async def patch_contacts(
    body: AddressBookChange, principal: PrincipalDep, services: ServicesDep
) -> MatchResult:
    """Add and remove numbers; the matches among the added ones."""
    matches, found = await services.contacts.patch(
        principal.user_id, body.add, body.remove, body.region
    )
    return _result(matches, found)


@router.get("/contacts", response_model=ContactList)
async def get_contacts(principal: PrincipalDep, services: ServicesDep) -> ContactList:
    """Your contacts who use Parley."""
    found = await services.contacts.matched(principal.user_id)
    return ContactList(contacts=[ContactOut(contact=c, mutual=m) for c, m in found])


@router.delete("/contacts", status_code=204)
async def delete_contacts(principal: PrincipalDep, services: ServicesDep) -> Response:
    """Forget your whole address book."""
    await services.contacts.clear(principal.user_id)
    return Response(status_code=204)


@router.get("/contacts/updates", response_model=StatusChangePage)
async def contact_updates(
    principal: PrincipalDep,
    services: ServicesDep,
    since: Annotated[
        int, Query(ge=0, le=2**62, description="`next_since` of the last page; 0 for all")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
) -> StatusChangePage:
    """Status changes of your mutual contacts, oldest first."""
    return await services.profiles.updates(principal.user_id, since, limit)
