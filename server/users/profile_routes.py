"""HTTP door of profiles, status, interests and blocks."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response

from server.deps import PrincipalDep, ServicesDep
from server.users.interests import CATALOGUE
from server.users.schemas import (
    BlockList,
    Interest,
    InterestList,
    ProfileCard,
    ProfileOut,
    ProfileUpdate,
    ProfileUpdated,
    StatusOut,
    StatusRequest,
)

router = APIRouter(prefix="/v1", tags=["profiles"])


@router.get("/interests", response_model=InterestList)
async def interests() -> InterestList:
    """The catalogue of interests a profile may list."""
    return InterestList(interests=[Interest(slug=s, label=label) for s, label in CATALOGUE.items()])


@router.get("/me/profile", response_model=ProfileOut)
async def my_profile(principal: PrincipalDep, services: ServicesDep) -> ProfileOut:
    return await services.profiles.me(principal.user_id)


@router.patch("/me/profile", response_model=ProfileUpdated)
async def update_profile(
    body: ProfileUpdate, principal: PrincipalDep, services: ServicesDep
) -> ProfileUpdated:
    """Change names, age, gender, interests or who may find you.

    `event_id` tells, through `GET /v1/events/{id}`, when people search shows it.
    """
    return await services.profiles.update(principal.user_id, body)


@router.get("/users/{user_id}/profile", response_model=ProfileCard)
async def profile_card(
    user_id: UUID, principal: PrincipalDep, services: ServicesDep
) -> ProfileCard:
    return await services.profiles.card(principal.user_id, str(user_id))


@router.put("/me/status", response_model=StatusOut)
async def set_status(
    body: StatusRequest, principal: PrincipalDep, services: ServicesDep
) -> StatusOut:
    """Set your status; mutual contacts get `status:updated` at once."""
    return await services.profiles.set_status(principal.user_id, body)


@router.delete("/me/status", response_model=StatusOut)
async def clear_status(principal: PrincipalDep, services: ServicesDep) -> StatusOut:
    return await services.profiles.set_status(principal.user_id, None)


@router.get("/blocks", response_model=BlockList)
async def blocks(principal: PrincipalDep, services: ServicesDep) -> BlockList:
    """People you blocked, most recent first."""
    return BlockList(user_ids=await services.blocks.blocked(principal.user_id))


@router.put("/blocks/{user_id}", status_code=204)
async def block(user_id: UUID, principal: PrincipalDep, services: ServicesDep) -> Response:
    """Block someone: no chat requests or direct messages from them, neither of you in
    the other's search."""
    await services.blocks.block(principal.user_id, str(user_id))
    return Response(status_code=204)


@router.delete("/blocks/{user_id}", status_code=204)
async def unblock(user_id: UUID, principal: PrincipalDep, services: ServicesDep) -> Response:
    await services.blocks.unblock(principal.user_id, str(user_id))
    return Response(status_code=204)
