"""Phone sign-up and sign-in (seed 002): one endpoint pair does both.

``start`` texts a six-digit code bound to a new request id; ``verify`` checks it
(at most ``otp_max_attempts`` tries, single use, ``otp_ttl`` seconds) and opens a
session, creating the account the first time the number is seen.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

import orjson
import phonenumbers

from config.errors import AuthenticationError, InvalidRequestError, RateLimitedError
from config.settings import AuthSettings
from crypto.otp import hash_otp, new_otp, verify_otp
from server.auth.schemas import PhoneStartResponse, TokenPair
from server.auth.sessions import SessionService
from server.auth.sms import SmsSender
from server.users.service import UserService
from storage.kv import KeyValueStore

log = logging.getLogger(__name__)

HOUR = 3600


class InvalidPhoneError(InvalidRequestError):
    code = "invalid_phone"


class InvalidCodeError(AuthenticationError):
    code = "invalid_code"


@dataclass(frozen=True)
class ClientInfo:
    ip: str
    user_agent: str


def normalize_phone(raw: str, region: str | None) -> str:
    """E.164 form of a number, or ``InvalidPhoneError`` saying what is wrong."""
    try:
        number = phonenumbers.parse(raw, region.upper() if region else None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneError(f"phone: not a phone number ({exc._msg})") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneError("phone: not a valid number for its region")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class PhoneAuthService:
    def __init__(
        self,
        settings: AuthSettings,
        kv: KeyValueStore,
        sms: SmsSender,
        secret: bytes,
        users: UserService,
        sessions: SessionService,
    ) -> None:
        self._settings = settings
        self._kv = kv
        self._sms = sms
        self._secret = secret
        self._users = users
        self._sessions = sessions

    async def start(
        self, raw_phone: str, region: str | None, client: ClientInfo
    ) -> PhoneStartResponse:
        phone = normalize_phone(raw_phone, region or self._settings.default_region)
        s = self._settings
        await self._limit(f"rl:otp:ip:{client.ip}", s.otp_per_ip_per_hour, "from this address")
        if s.otp_resend_cooldown and not await self._kv.set(
            f"otp:cooldown:{phone}", b"1", ttl=s.otp_resend_cooldown, only_if_absent=True
        ):
            wait = await self._kv.ttl(f"otp:cooldown:{phone}") or 1
            raise RateLimitedError(
                f"a code was just sent to this number; ask again in {int(wait) + 1} s",
                retry_after=int(wait) + 1,
                code="otp_cooldown",
            )
        await self._limit(f"rl:otp:phone:{phone}", s.otp_per_number_per_hour, "for this number")

        request_id = secrets.token_urlsafe(18)
        code = new_otp()
        record = {"phone": phone, "hash": hash_otp(self._secret, request_id, code)}
        await self._kv.set(f"otp:{request_id}", orjson.dumps(record), ttl=s.otp_ttl)
        try:
            await self._sms.send(
                phone, f"Your Parley code is {code}. It expires in {s.otp_ttl // 60} min."
            )
        except Exception:
            await self._kv.delete(f"otp:{request_id}")
            raise
        return PhoneStartResponse(
            request_id=request_id,
            phone=phone,
            expires_in=s.otp_ttl,
            resend_after=s.otp_resend_cooldown,
        )

    async def verify(
        self,
        request_id: str,
        code: str,
        *,
        nickname: str | None,
        device_name: str,
        client: ClientInfo,
    ) -> TokenPair:
        key = f"otp:{request_id}"
        raw = await self._kv.get(key)
        if raw is None:
            raise InvalidCodeError("the code is wrong or has expired; request a new one")
        record = orjson.loads(raw)
        attempts = await self._kv.incr(f"{key}:attempts", ttl=self._settings.otp_ttl)
        limit = self._settings.otp_max_attempts
        if attempts > limit:
            await self._kv.delete(key)
            raise InvalidCodeError(
                "too many wrong codes; request a new one", code="otp_attempts_exceeded"
            )
        if not verify_otp(self._secret, request_id, code, record["hash"]):
            if attempts >= limit:
                await self._kv.delete(key)
                raise InvalidCodeError(
                    "too many wrong codes; request a new one", code="otp_attempts_exceeded"
                )
            raise InvalidCodeError(f"the code is wrong; {limit - attempts} attempt(s) left")
        # Single use: only the caller that deletes the record may sign in with it.
        if not await self._kv.delete(key):
            raise InvalidCodeError("the code is wrong or has expired; request a new one")
        user, created = await self._users.sign_in_with_identity(
            "phone", record["phone"], nickname=nickname
        )
        log.info("phone sign-in", extra={"user_id": str(user.id), "new_user": created})
        return await self._sessions.start_session(
            str(user.id),
            device_name=device_name,
            user_agent=client.user_agent,
            ip=client.ip,
            new_user=created,
        )

    async def _limit(self, key: str, limit: int, scope: str) -> None:
        count = await self._kv.incr(key, ttl=HOUR)
        if count > limit:
            wait = int(await self._kv.ttl(key) or HOUR) + 1
            raise RateLimitedError(
                f"too many codes requested {scope}; try again in {wait} s", retry_after=wait
            )
