"""HTTP door of users."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter

from server.deps import PrincipalDep, ServicesDep
from server.users.schemas import MeOut, UserOut

router = APIRouter(prefix="/v1", tags=["users"])


@router.get("/me", response_model=MeOut)
async def get_me(principal: PrincipalDep, services: ServicesDep) -> MeOut:
    """The signed-in user, with the phone numbers linked to the account."""
    return await services.users.me(principal.user_id)


@router.get("/users/{user_id}", response_model=UserOut)
async def get_user(user_id: UUID, principal: PrincipalDep, services: ServicesDep) -> UserOut:
    """Another user's public profile."""
    return await services.users.get(str(user_id))
