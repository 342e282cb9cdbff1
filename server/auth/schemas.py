"""Request and response models of the auth endpoints."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from server.text import SingleLine


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


PhoneText = Annotated[str, StringConstraints(min_length=3, max_length=32), SingleLine]
RegionCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")]
Nickname = Annotated[str, StringConstraints(max_length=64), SingleLine]
DeviceName = Annotated[str, StringConstraints(max_length=128), SingleLine]
# secrets.token_urlsafe(18): exactly 24 URL-safe characters, and nothing else
# may reach a key-value key.
RequestId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{24}$")]


class PhoneStartRequest(_Strict):
    phone: PhoneText = Field(description="Phone number, international (+15551234567) or local")
    region: RegionCode | None = Field(
        default=None, description="ISO 3166 region for numbers written without a country code"
    )


class PhoneStartResponse(BaseModel):
    request_id: str = Field(description="Pass it to /v1/auth/phone/verify with the code")
    phone: str = Field(description="The number in E.164 form, as the code was sent to it")
    expires_in: int = Field(description="Seconds the code stays valid")
    resend_after: int = Field(description="Seconds before another code may be requested")


class PhoneVerifyRequest(_Strict):
    request_id: RequestId
    code: Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]
    nickname: Nickname | None = Field(
        default=None, description="Seed 002: not unique; replaces the current nickname"
    )
    device_name: DeviceName = ""


class RefreshRequest(_Strict):
    refresh_token: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{16,128}$")]


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105 - the scheme name
    expires_in: int = Field(description="Seconds until the access token expires")
    user_id: str
    session_id: str
    new_user: bool = False
