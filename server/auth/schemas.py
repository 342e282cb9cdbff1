"""Request and response models of the auth endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

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


Login = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,31}$")]
Password = Annotated[str, StringConstraints(min_length=1, max_length=128)]
EmailText = Annotated[str, StringConstraints(min_length=3, max_length=254), SingleLine]
PersonName = Annotated[str, StringConstraints(max_length=100), SingleLine]
LinkToken = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{43}$")]
HexSignature = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-fA-F]{128,130}$")]
WalletMessage = Annotated[str, StringConstraints(min_length=1, max_length=2048)]


class EmailRegisterRequest(_Strict):
    login: Login = Field(description="3-32 of A-Z a-z 0-9 _ . -, unique case-insensitively")
    password: Password = Field(description="10-128 characters")
    email: EmailText
    first_name: PersonName = ""
    last_name: PersonName = ""


class EmailSentResponse(BaseModel):
    status: str = Field(
        description='Always "email_sent": no answer reveals whether an account exists'
    )
    email: str


class EmailTokenRequest(_Strict):
    token: LinkToken = Field(description="The token from the e-mailed link")


class EmailVerifiedResponse(BaseModel):
    status: str = "verified"
    email: str


class VerificationResendRequest(_Strict):
    email: EmailText = Field(description="The address the account was registered with")


class EmailLoginRequest(_Strict):
    identifier: Annotated[str, StringConstraints(min_length=3, max_length=254), SingleLine] = Field(
        description="The login or the verified e-mail address"
    )
    password: Password
    device_name: DeviceName = ""


class PasswordResetRequest(_Strict):
    email: EmailText


class PasswordResetConfirm(_Strict):
    token: LinkToken
    password: Password


class ChangeEmailRequest(_Strict):
    email: EmailText


class SetPasswordRequest(_Strict):
    current_password: Password | None = Field(
        default=None, description="Required when the account already has a password"
    )
    new_password: Password


class WalletChallengeRequest(_Strict):
    chain: Literal["ethereum", "substrate"]
    address: Annotated[str, StringConstraints(min_length=40, max_length=64), SingleLine] = Field(
        description="0x-hex Ethereum address (EIP-55 accepted) or SS58 Substrate/CENNZnet address"
    )
    chain_id: Annotated[int, Field(ge=1, le=2**53)] | None = Field(
        default=None, description="EIP-155 chain id for Ethereum (default: the first accepted)"
    )


class WalletChallengeResponse(BaseModel):
    message: str = Field(description="Sign exactly this text (personal_sign / signRaw)")
    nonce: str
    expires_at: datetime


class WalletVerifyRequest(_Strict):
    message: WalletMessage
    signature: HexSignature = Field(
        description="0x-hex: 65 bytes (Ethereum) or 64 bytes (Substrate)"
    )
    device_name: DeviceName = ""


class WalletLinkRequest(_Strict):
    message: WalletMessage
    signature: HexSignature


class PhoneLinkVerifyRequest(_Strict):
    request_id: RequestId
    code: Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]


class IdentityOut(BaseModel):
    id: str
    kind: str = Field(description="phone | email | ethereum | substrate | oidc")
    display: str
    verified: bool
    created_at: datetime


class IdentityList(BaseModel):
    identities: list[IdentityOut]


class SessionOut(BaseModel):
    id: str
    device_name: str
    user_agent: str
    ip: str
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    current: bool = Field(description="The session of the token making this request")


class SessionList(BaseModel):
    sessions: list[SessionOut]
