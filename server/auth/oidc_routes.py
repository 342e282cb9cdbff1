"""HTTP doors of OpenID Connect: sign-in (under /v1/auth) and linking (under /v1/me).

The browser opens ``start`` and comes back through ``callback``; the app then
spends the code it finds in its return URL's fragment with ``exchange`` (or,
when linking, ``finish``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import RedirectResponse

from config.settings import RETURN_URL_MAX_CHARS
from server.auth.oidc import BROWSER_COOKIE, STATE_TTL, OidcService
from server.auth.oidc_schemas import (
    APP_CHALLENGE_HELP,
    OidcExchangeRequest,
    OidcLinkFinishRequest,
    OidcLinkStartRequest,
    OidcLinkStartResponse,
    OidcProviderList,
)
from server.auth.schemas import IdentityOut, TokenPair
from server.deps import ClientDep, PrincipalDep, ServicesDep
from server.openapi import errors

router = APIRouter(prefix="/oidc")
link_router = APIRouter(prefix="/me/identities/oidc")

ProviderSlug = Annotated[
    str, Path(max_length=64, description="A slug from /v1/auth/oidc/providers")
]
_COOKIE_PATH = "/v1/auth/oidc/"


async def get_oidc(services: ServicesDep) -> OidcService:
    return services.oidc


OidcDep = Annotated[OidcService, Depends(get_oidc)]


def _redirect(url: str) -> RedirectResponse:
    # The callback's URL holds the provider's code: no caching, no Referer.
    return RedirectResponse(
        url,
        status_code=302,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


@router.get("/providers", response_model=OidcProviderList)
async def list_oidc_providers(oidc: OidcDep) -> OidcProviderList:
    """The OpenID Connect providers people may sign in with here (for sign-in buttons)."""
    return OidcProviderList(providers=oidc.providers())


@router.get(
    "/{provider}/start",
    response_class=RedirectResponse,
    status_code=302,
    responses=errors(
        (
            302,
            "To the provider's authorization endpoint (setting the browser-binding cookie), "
            "or back to `return_to` with `#parley_error=<code>`: `rate_limited`, "
            "`oidc_provider_unavailable`, `oidc_provider_error`",
        ),
        404,
        (422, "`return_to` is not allowed (`oidc_return_url_not_allowed`)"),
    ),
)
async def start_oidc_sign_in(
    provider: ProviderSlug,
    return_to: Annotated[
        str,
        Query(
            min_length=1,
            max_length=RETURN_URL_MAX_CHARS,
            description="The app's URL to come back to (PARLEY_AUTH_OIDC_RETURN_URLS)",
        ),
    ],
    app_challenge: Annotated[
        str, Query(pattern=r"^[A-Za-z0-9_-]{43}$", description=APP_CHALLENGE_HELP)
    ],
    request: Request,
    oidc: OidcDep,
    client: ClientDep,
) -> RedirectResponse:
    """Send the browser to the provider (302); it comes back to `return_to` with a code.

    An unknown provider or a return URL off the allow-list is a JSON error here;
    once `return_to` is known good, later failures (rate limit, provider down or
    unusable) send the browser back to it with `#parley_error=<code>`.
    """
    started = await oidc.start_sign_in(
        provider,
        return_to,
        client,
        app_challenge=app_challenge,
        browser_id=request.cookies.get(BROWSER_COOKIE),
    )
    response = _redirect(started.authorization_url)
    if started.browser_id is not None:
        response.set_cookie(
            BROWSER_COOKIE,
            started.browser_id,
            max_age=STATE_TTL,
            path=_COOKIE_PATH,
            secure=oidc.secure_cookies,
            httponly=True,
            samesite="lax",
        )
    return response


@router.get(
    "/{provider}/callback",
    response_class=RedirectResponse,
    status_code=302,
    responses=errors(
        (302, "To the app's return URL with `#parley_code=...` or `#parley_error=<code>`"),
        (400, "The state is unknown, expired or used (`oidc_state_invalid`): no return URL"),
        404,
    ),
)
async def finish_oidc_sign_in_at_provider(
    provider: ProviderSlug,
    request: Request,
    oidc: OidcDep,
    state: Annotated[str, Query(max_length=128)] = "",
    code: Annotated[str | None, Query(max_length=4096)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
    iss: Annotated[str | None, Query(max_length=2048)] = None,
) -> RedirectResponse:
    """Where the provider sends the browser back; it goes on to the app's return URL.

    The return URL gets `#parley_code=<code>` (spend it with `POST /v1/auth/oidc/exchange`,
    or `POST /v1/me/identities/oidc/finish` when linking) or `#parley_error=<code>`.
    """
    location = await oidc.callback(
        provider,
        state=state,
        code=code,
        error=error,
        issuer=iss,
        browser_id=request.cookies.get(BROWSER_COOKIE),
    )
    return _redirect(location)


@router.post(
    "/exchange",
    response_model=TokenPair,
    responses=errors((401, "The code is unknown, expired or used (`oidc_code_invalid`)")),
)
async def exchange_oidc_code(
    body: OidcExchangeRequest, request: Request, oidc: OidcDep, client: ClientDep
) -> TokenPair:
    """Spend the one-time code for a token pair; the account is created on first sign-in.

    Sent from a browser that started a sign-in here, only that sign-in's code is taken.
    """
    return await oidc.exchange(
        body.code,
        app_verifier=body.app_verifier,
        device_name=body.device_name,
        client=client,
        browser_id=request.cookies.get(BROWSER_COOKIE),
    )


@link_router.post(
    "/{provider}/start",
    response_model=OidcLinkStartResponse,
    responses=errors(
        404,
        (429, "Too many sign-ins started from this client; retry after `Retry-After`"),
        (502, "The provider's discovery document is unusable (`oidc_provider_error`)"),
    ),
)
async def start_oidc_link(
    provider: ProviderSlug,
    body: OidcLinkStartRequest,
    principal: PrincipalDep,
    oidc: OidcDep,
    client: ClientDep,
) -> OidcLinkStartResponse:
    """The provider URL to open; the code it returns with links only to this account."""
    started = await oidc.start_link(
        provider,
        body.return_to,
        client,
        app_challenge=body.app_challenge,
        user_id=principal.user_id,
    )
    return OidcLinkStartResponse(authorization_url=started.authorization_url, expires_in=STATE_TTL)


@link_router.post(
    "/finish",
    response_model=IdentityOut,
    responses=errors(
        (401, "No access token, or the code is not for this account (`oidc_code_invalid`)"),
        (409, "The identity belongs to another account (`identity_taken`)"),
    ),
)
async def finish_oidc_link(
    body: OidcLinkFinishRequest, principal: PrincipalDep, oidc: OidcDep
) -> IdentityOut:
    """Spend the code from the return URL: the provider identity joins this account."""
    return await oidc.finish_link(principal.user_id, body.code, body.app_verifier)
