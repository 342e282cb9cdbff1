"""Request and response models of OpenID Connect sign-in and linking."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from config.settings import RETURN_URL_MAX_CHARS
from server.auth.schemas import DeviceName

# secrets.token_urlsafe(32): exactly 43 URL-safe characters.
OidcCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{43}$")]
ReturnUrl = Annotated[str, StringConstraints(min_length=1, max_length=RETURN_URL_MAX_CHARS)]
# The app's own PKCE pair (RFC 7636 S256): the challenge at the start, the verifier
# when the code is spent, so only the app that started a sign-in can finish it.
AppChallenge = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{43}$")]
AppVerifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._~-]{43,128}$")]
APP_CHALLENGE_HELP = (
    "BASE64URL(SHA-256(app_verifier)) without padding: the app keeps the verifier and "
    "sends it with the code"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class OidcProviderOut(BaseModel):
    slug: str = Field(description="Names the provider in /v1/auth/oidc/{slug}/...")
    display_name: str = Field(description="The sign-in button's label")


class OidcProviderList(BaseModel):
    providers: list[OidcProviderOut]


class OidcExchangeRequest(_Strict):
    code: OidcCode = Field(description="`parley_code` from the return URL's fragment")
    app_verifier: AppVerifier = Field(description="The verifier of the start's `app_challenge`")
    device_name: DeviceName = ""


class OidcLinkStartRequest(_Strict):
    return_to: ReturnUrl = Field(
        description="Where the browser goes afterwards (PARLEY_AUTH_OIDC_RETURN_URLS)"
    )
    app_challenge: AppChallenge = Field(description=APP_CHALLENGE_HELP)


class OidcLinkStartResponse(BaseModel):
    authorization_url: str = Field(description="Open it in the browser")
    expires_in: int = Field(description="Seconds the sign-in at the provider may take")


class OidcLinkFinishRequest(_Strict):
    code: OidcCode = Field(description="`parley_code` from the return URL's fragment")
    app_verifier: AppVerifier = Field(description="The verifier of the start's `app_challenge`")
