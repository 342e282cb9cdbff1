"""Request and response models of OpenID Connect sign-in and linking."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from config.settings import RETURN_URL_MAX_CHARS
from server.auth.schemas import DeviceName

# secrets.token_urlsafe(32): exactly 43 URL-safe characters.
OidcCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{43}$")]
ReturnUrl = Annotated[str, StringConstraints(min_length=1, max_length=RETURN_URL_MAX_CHARS)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class OidcProviderOut(BaseModel):
    slug: str = Field(description="Names the provider in /v1/auth/oidc/{slug}/...")
    display_name: str = Field(description="The sign-in button's label")


class OidcProviderList(BaseModel):
    providers: list[OidcProviderOut]


class OidcExchangeRequest(_Strict):
    code: OidcCode = Field(description="`parley_code` from the return URL's fragment")
    device_name: DeviceName = ""


class OidcLinkStartRequest(_Strict):
    return_to: ReturnUrl = Field(
        description="Where the browser goes afterwards (PARLEY_AUTH_OIDC_RETURN_URLS)"
    )


class OidcLinkStartResponse(BaseModel):
    authorization_url: str = Field(description="Open it in the browser")
    expires_in: int = Field(description="Seconds the sign-in at the provider may take")


class OidcLinkFinishRequest(_Strict):
    code: OidcCode = Field(description="`parley_code` from the return URL's fragment")
