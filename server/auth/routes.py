"""HTTP doors of sign-in: phone, e-mail + password, wallets, OpenID Connect, tokens, logout."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, Response
from starlette.responses import HTMLResponse

from server.auth.oidc_routes import router as oidc_router
from server.auth.pages import reset_password_page, verify_email_page
from server.auth.schemas import (
    EmailLoginRequest,
    EmailRegisterRequest,
    EmailSentResponse,
    EmailTokenRequest,
    EmailVerifiedResponse,
    LinkToken,
    PasswordResetConfirm,
    PasswordResetRequest,
    PhoneStartRequest,
    PhoneStartResponse,
    PhoneVerifyRequest,
    RefreshRequest,
    TokenPair,
    VerificationResendRequest,
    WalletChallengeRequest,
    WalletChallengeResponse,
    WalletVerifyRequest,
)
from server.auth.wallets import SIGN_IN
from server.deps import ClientDep, PrincipalDep, ServicesDep
from server.openapi import errors

router = APIRouter(prefix="/v1/auth", tags=["auth"])


# -- phone (seed 002) --------------------------------------------------------


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


# -- e-mail + password (seed 001) ----------------------------------------------


@router.post("/email/register", response_model=EmailSentResponse, status_code=202)
async def register_with_email(
    body: EmailRegisterRequest, services: ServicesDep
) -> EmailSentResponse:
    """Create an account and mail a confirmation link (the answer never says if one existed)."""
    email = await services.email_auth.register(
        login=body.login,
        password=body.password,
        email=body.email,
        first_name=body.first_name,
        last_name=body.last_name,
    )
    return EmailSentResponse(status="email_sent", email=email)


@router.get("/email/verify", response_class=HTMLResponse, include_in_schema=False)
async def verify_email_page_route(
    token: Annotated[LinkToken | None, Query()] = None,
) -> HTMLResponse:
    # Links carry the token in their fragment (server/auth/pages.py); ?token= is
    # what links mailed before that carried.
    return HTMLResponse(verify_email_page(token))


@router.post("/email/verify", response_model=EmailVerifiedResponse)
async def verify_email(body: EmailTokenRequest, services: ServicesDep) -> EmailVerifiedResponse:
    """Spend a confirmation link: the address becomes the account's verified e-mail."""
    verified = await services.email_auth.verify_email(body.token)
    return EmailVerifiedResponse(email=verified.email)


@router.post(
    "/email/verify/resend",
    response_model=EmailSentResponse,
    status_code=202,
    responses=errors(
        (429, "Too many for this e-mail or from this client; retry after `Retry-After`")
    ),
)
async def resend_verification_email(
    body: VerificationResendRequest,
    services: ServicesDep,
    client: ClientDep,
    background: BackgroundTasks,
) -> EmailSentResponse:
    """Mail a fresh confirmation link if an unverified account waits on the address.

    The answer is the same whether or not one does: the lookup and the mail
    happen after it is sent, so neither its content nor its timing tells.
    """
    key = await services.email_auth.accept_verification_resend(body.email, client)
    background.add_task(services.email_auth.resend_verification, key)
    return EmailSentResponse(status="email_sent", email=body.email)


@router.post("/email/login", response_model=TokenPair)
async def sign_in_with_password(
    body: EmailLoginRequest, services: ServicesDep, client: ClientDep
) -> TokenPair:
    """Sign in with login or e-mail and password."""
    return await services.email_auth.sign_in(
        body.identifier, body.password, device_name=body.device_name, client=client
    )


@router.post(
    "/email/password-reset",
    response_model=EmailSentResponse,
    status_code=202,
    responses=errors(
        (429, "Too many for this e-mail or from this client; retry after `Retry-After`")
    ),
)
async def request_password_reset(
    body: PasswordResetRequest,
    services: ServicesDep,
    client: ClientDep,
    background: BackgroundTasks,
) -> EmailSentResponse:
    """Mail a reset link if a verified address of an account matches.

    The answer is the same if not: the lookup and the mail happen after it is
    sent, so neither its content nor its timing tells.
    """
    key = await services.email_auth.accept_password_reset(body.email, client)
    background.add_task(services.email_auth.request_password_reset, key)
    return EmailSentResponse(status="email_sent", email=body.email)


@router.get("/email/password-reset/confirm", response_class=HTMLResponse, include_in_schema=False)
async def reset_password_page_route(
    token: Annotated[LinkToken | None, Query()] = None,
) -> HTMLResponse:
    return HTMLResponse(reset_password_page(token))


@router.post("/email/password-reset/confirm", status_code=204)
async def reset_password(body: PasswordResetConfirm, services: ServicesDep) -> Response:
    """Spend a reset link: set the new password and sign out every device."""
    await services.email_auth.reset_password(body.token, body.password)
    return Response(status_code=204)


# -- wallets (seeds 003, 004) ----------------------------------------------------


@router.post("/wallet/challenge", response_model=WalletChallengeResponse)
async def wallet_challenge(
    body: WalletChallengeRequest, services: ServicesDep
) -> WalletChallengeResponse:
    """The message to sign: EIP-4361 for Ethereum, a plain challenge for Substrate."""
    challenge = await services.wallets.challenge(
        chain=body.chain,
        address=body.address,
        chain_id=body.chain_id,
        purpose=SIGN_IN,
        user_id=None,
    )
    return WalletChallengeResponse(
        message=challenge.message, nonce=challenge.nonce, expires_at=challenge.expires_at
    )


@router.post("/wallet/verify", response_model=TokenPair)
async def wallet_verify(
    body: WalletVerifyRequest, services: ServicesDep, client: ClientDep
) -> TokenPair:
    """Check the signed challenge and open a session (the account is created on first use)."""
    return await services.identities.sign_in_with_wallet(
        body.message, body.signature, device_name=body.device_name, client=client
    )


# -- tokens -------------------------------------------------------------------------


@router.post("/refresh", response_model=TokenPair)
async def refresh_tokens(body: RefreshRequest, services: ServicesDep) -> TokenPair:
    """Spend a refresh token for a new pair; a reused one revokes the session."""
    return await services.sessions.rotate(body.refresh_token)


@router.post("/logout", status_code=204)
async def logout(principal: PrincipalDep, services: ServicesDep) -> Response:
    """End this session: its tokens stop working and its sockets close, on every node."""
    await services.sessions.revoke(principal.session_id, reason="logout")
    return Response(status_code=204)


# -- OpenID Connect (seed 000's "social") ----------------------------------------------

router.include_router(oidc_router)
