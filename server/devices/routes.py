"""HTTP door of the CA and of devices."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response, status

from config.errors import InvalidRequestError
from server.chats.access import parse_id
from server.deps import PrincipalDep, ServicesDep
from server.devices.schemas import (
    CaOut,
    DeviceList,
    DeviceOut,
    RegisterDeviceRequest,
    UserKeysList,
)

router = APIRouter(prefix="/v1", tags=["devices"])


@router.get("/ca", response_model=CaOut)
async def get_ca(services: ServicesDep) -> CaOut:
    """The CA public key that verifies device certificates (no sign-in needed)."""
    return services.devices.ca()


@router.post("/devices", response_model=DeviceOut, status_code=status.HTTP_201_CREATED)
async def register_device(
    body: RegisterDeviceRequest, principal: PrincipalDep, services: ServicesDep
) -> DeviceOut:
    """Register this device's public keys and get its certificate."""
    return await services.devices.register(
        principal.user_id,
        principal.session_id,
        name=body.name,
        signing_key=body.signing_key,
        agreement_key=body.agreement_key,
        proof=body.proof,
    )


@router.get("/keys", response_model=UserKeysList)
async def get_keys(
    principal: PrincipalDep,
    services: ServicesDep,
    user_ids: Annotated[str, Query(max_length=100 * 37, description="Comma-separated, up to 100")],
    include_revoked: bool = False,
) -> UserKeysList:
    """The device keys (and certificates) of users: what a sender encrypts to."""
    ids = [i for i in user_ids.split(",") if i]
    if not 1 <= len(ids) <= 100:
        raise InvalidRequestError("user_ids: give 1 to 100 comma-separated ids")
    for uid in ids:
        parse_id(uid, "user_ids")
    return await services.devices.keys_of(ids, include_revoked=include_revoked)


@router.get("/devices", response_model=DeviceList)
async def list_devices(principal: PrincipalDep, services: ServicesDep) -> DeviceList:
    """The signed-in user's active devices, each with its certificate."""
    return await services.devices.list_devices(principal.user_id)


@router.delete(
    "/devices/{device_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response
)
async def revoke_device(device_id: UUID, principal: PrincipalDep, services: ServicesDep) -> None:
    """Revoke one of the user's own devices."""
    await services.devices.revoke(principal.user_id, str(device_id))
