"""HTTP door of users."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from config.errors import InvalidRequestError
from server.chats.access import parse_id
from server.deps import PrincipalDep, ServicesDep
from server.users.schemas import MeOut, PresenceList, PresenceOut, UserOut

router = APIRouter(prefix="/v1", tags=["users"])


@router.get("/me", response_model=MeOut)
async def get_me(principal: PrincipalDep, services: ServicesDep) -> MeOut:
    """The signed-in user, with the phone numbers linked to the account."""
    return await services.users.me(principal.user_id)


@router.get("/presence", response_model=PresenceList)
async def get_presence(
    principal: PrincipalDep,
    services: ServicesDep,
    user_ids: Annotated[str, Query(max_length=100 * 37, description="Comma-separated, up to 100")],
) -> PresenceList:
    """Online now, or when last seen, for up to 100 users.

    Only for people who share a conversation with you and are on neither side of a
    block with you; anyone else reads as never seen (`online` false, `last_seen`
    null), the same answer as for an id that is nobody's.
    """
    ids = [i for i in user_ids.split(",") if i]
    if not 1 <= len(ids) <= 100:
        raise InvalidRequestError("user_ids: give 1 to 100 comma-separated ids")
    ids = [str(parse_id(uid, "user_ids")) for uid in ids]
    visible = await services.users.presence_visible(principal.user_id, ids)
    states = {s.user_id: s for s in await services.hub.presence(sorted(visible))}
    return PresenceList(
        users=[
            PresenceOut(user_id=uid, online=s.online, last_seen=s.last_seen)
            if (s := states.get(uid))
            else PresenceOut(user_id=uid, online=False, last_seen=None)
            for uid in ids
        ]
    )


@router.get("/users/{user_id}", response_model=UserOut)
async def get_user(user_id: UUID, principal: PrincipalDep, services: ServicesDep) -> UserOut:
    """Another user's public profile."""
    return await services.users.get(str(user_id))
