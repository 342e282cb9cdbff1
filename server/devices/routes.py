"""HTTP door of the CA and of devices."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response, status

from server.deps import PrincipalDep, ServicesDep
from server.devices.schemas import CaOut, DeviceList, DeviceOut, RegisterDeviceRequest

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
