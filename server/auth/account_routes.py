"""HTTP doors of the signed-in account: identities, e-mail, password, sessions."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response

from config.errors import NotFoundError
from server.auth.oidc_routes import link_router as oidc_link_router
from server.auth.schemas import (
    ChangeEmailRequest,
    EmailSentResponse,
    IdentityList,
    IdentityOut,
    PhoneLinkVerifyRequest,
    PhoneStartRequest,
    PhoneStartResponse,
    SessionList,
    SessionOut,
    SetPasswordRequest,
    WalletChallengeRequest,
    WalletChallengeResponse,
    WalletLinkRequest,
)
from server.auth.wallets import LINK
from server.deps import ClientDep, PrincipalDep, ServicesDep

router = APIRouter(prefix="/v1", tags=["account"])


@router.get("/me/identities", response_model=IdentityList)
async def list_identities(principal: PrincipalDep, services: ServicesDep) -> IdentityList:
    """The ways this account can sign in."""
    return IdentityList(identities=await services.identities.list(principal.user_id))


@router.delete("/me/identities/{identity_id}", status_code=204)
async def unlink_identity(
    identity_id: UUID, principal: PrincipalDep, services: ServicesDep
) -> Response:
    """Remove a way to sign in; the last verified one cannot be removed."""
    await services.identities.unlink(principal.user_id, str(identity_id))
    return Response(status_code=204)


@router.post("/me/identities/phone/start", response_model=PhoneStartResponse)
async def start_phone_link(
    body: PhoneStartRequest, principal: PrincipalDep, services: ServicesDep, client: ClientDep
) -> PhoneStartResponse:
    """Text a code that links this number to the account."""
    return await services.identities.start_phone_link(
        principal.user_id, body.phone, body.region, client
    )


@router.post("/me/identities/phone/verify", response_model=IdentityOut)
async def finish_phone_link(
    body: PhoneLinkVerifyRequest, principal: PrincipalDep, services: ServicesDep, client: ClientDep
) -> IdentityOut:
    """Check the code and link the number."""
    return await services.identities.finish_phone_link(
        principal.user_id, body.request_id, body.code, client
    )


@router.post("/me/identities/wallet/challenge", response_model=WalletChallengeResponse)
async def wallet_link_challenge(
    body: WalletChallengeRequest, principal: PrincipalDep, services: ServicesDep
) -> WalletChallengeResponse:
    """The message the wallet signs to be linked to this account (only this account may use it)."""
    challenge = await services.wallets.challenge(
        chain=body.chain,
        address=body.address,
        chain_id=body.chain_id,
        purpose=LINK,
        user_id=principal.user_id,
    )
    return WalletChallengeResponse(
        message=challenge.message, nonce=challenge.nonce, expires_at=challenge.expires_at
    )


@router.post("/me/identities/wallet", response_model=IdentityOut)
async def link_wallet(
    body: WalletLinkRequest, principal: PrincipalDep, services: ServicesDep
) -> IdentityOut:
    """Check the signed link challenge and link the wallet."""
    return await services.identities.link_wallet(principal.user_id, body.message, body.signature)


@router.post("/me/email", response_model=EmailSentResponse, status_code=202)
async def change_email(
    body: ChangeEmailRequest, principal: PrincipalDep, services: ServicesDep
) -> EmailSentResponse:
    """Mail a confirmation link to a new address; it replaces the old one once confirmed."""
    email = await services.email_auth.change_email(principal.user_id, body.email)
    return EmailSentResponse(status="email_sent", email=email)


@router.put("/me/password", status_code=204)
async def set_password(
    body: SetPasswordRequest, principal: PrincipalDep, services: ServicesDep
) -> Response:
    """Change the password (the current one is required if there is one)."""
    await services.email_auth.set_password(
        principal.user_id, body.current_password, body.new_password
    )
    return Response(status_code=204)


@router.get("/sessions", response_model=SessionList)
async def list_sessions(principal: PrincipalDep, services: ServicesDep) -> SessionList:
    """Signed-in devices of this account, most recently used first."""
    rows = await services.sessions.list_sessions(principal.user_id)
    return SessionList(
        sessions=[
            SessionOut(
                id=str(s.id),
                device_name=s.device_name,
                user_agent=s.user_agent,
                ip=s.ip,
                created_at=s.created_at,
                last_used_at=s.last_used_at,
                expires_at=s.expires_at,
                current=str(s.id) == principal.session_id,
            )
            for s in rows
        ]
    )


@router.delete("/sessions/{session_id}", status_code=204)
async def revoke_session(
    session_id: UUID, principal: PrincipalDep, services: ServicesDep
) -> Response:
    """Sign a device out: its tokens stop working and its sockets close at once."""
    if not await services.sessions.revoke_own(principal.user_id, str(session_id), reason="revoked"):
        raise NotFoundError("no such active session on your account", code="session_not_found")
    return Response(status_code=204)


router.include_router(oidc_link_router)
