"""HTTP door of phone sign-in and token refresh."""

from __future__ import annotations

from fastapi import APIRouter

from server.auth.schemas import (
    PhoneStartRequest,
    PhoneStartResponse,
    PhoneVerifyRequest,
    RefreshRequest,
    TokenPair,
)
from server.deps import ClientDep, ServicesDep

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post("/phone/start", response_model=PhoneStartResponse)
async def start_phone_sign_in(
    body: PhoneStartRequest, services: ServicesDep, client: ClientDep
) -> PhoneStartResponse:
    """Text a six-digit code to the number (sign-up and sign-in are the same)."""
    return await services.phone_auth.start(body.phone, body.region, client)


@router.post("/phone/verify", response_model=TokenPair)
async def verify_phone_sign_in(
    body: PhoneVerifyRequest, services: ServicesDep, client: ClientDep
) -> TokenPair:
    """Check the code and open a session; the account is created on first sign-in."""
    return await services.phone_auth.verify(
        body.request_id,
        body.code,
        nickname=body.nickname,
        device_name=body.device_name,
        client=client,
    )


@router.post("/refresh", response_model=TokenPair)
async def refresh_tokens(body: RefreshRequest, services: ServicesDep) -> TokenPair:
    """Spend a refresh token for a new pair; a reused one revokes the session."""
    return await services.sessions.rotate(body.refresh_token)
