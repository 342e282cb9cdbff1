"""Phone sign-up and sign-in (seed 002): one endpoint pair does both.

``start`` texts a six-digit code bound to a new request id; ``verify`` checks it
(at most ``otp_max_attempts`` tries, single use, ``otp_ttl`` seconds) and opens a
session, creating the account the first time the number is seen.
"""

from __future__ import annotations

import logging
import re
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
_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{24}")


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


def _keys(request_id: str) -> tuple[str, str, str]:
    """The record, attempt counter and claim of one start request, in separate namespaces."""
    if not _REQUEST_ID.fullmatch(request_id):
        raise InvalidCodeError("the code is wrong or has expired; request a new one")
    return f"otp:req:{request_id}", f"otp:tries:{request_id}", f"otp:claim:{request_id}"


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
        self,
        raw_phone: str,
        region: str | None,
        client: ClientInfo,
        *,
        link_user_id: str | None = None,
    ) -> PhoneStartResponse:
        """Text a code. With ``link_user_id`` the code can only link the number to that account."""
        phone = normalize_phone(raw_phone, region or self._settings.default_region)
        s = self._settings
        await self._limit(
            f"rl:otp-start:ip:{client.ip}", s.otp_per_ip_per_hour, "from this address"
        )
        cooldown_key = f"otp:cool:{phone}"
        if s.otp_resend_cooldown and not await self._kv.set(
            cooldown_key, b"1", ttl=s.otp_resend_cooldown, only_if_absent=True
        ):
            wait = int(await self._kv.ttl(cooldown_key) or 0) + 1
            raise RateLimitedError(
                f"a code was just sent to this number; ask again in {wait} s",
                retry_after=wait,
                code="otp_cooldown",
            )
        await self._limit(
            f"rl:otp-start:phone:{phone}", s.otp_per_number_per_hour, "for this number"
        )

        request_id = secrets.token_urlsafe(18)
        code = new_otp()
        record_key, _, _ = _keys(request_id)
        record = {
            "phone": phone,
            "hash": hash_otp(self._secret, request_id, code),
            "link_user": link_user_id or "",
        }
        await self._kv.set(record_key, orjson.dumps(record), ttl=s.otp_ttl)
        try:
            await self._sms.send(
                phone, f"Your Parley code is {code}. It expires in {s.otp_ttl // 60} min."
            )
        except Exception:
            await self._kv.delete(record_key)
            raise
        return PhoneStartResponse(
            request_id=request_id,
            phone=phone,
            expires_in=s.otp_ttl,
            resend_after=s.otp_resend_cooldown,
        )

    async def check_code(self, request_id: str, code: str, client: ClientInfo) -> _CheckedCode:
        """Check a code without spending it; at most ``otp_max_attempts`` tries per request.

        The caller finishes its work and then calls :meth:`spend`, or :meth:`release`
        if the work failed, so an outage does not burn a correct code.
        """
        s = self._settings
        await self._limit(
            f"rl:otp-verify:ip:{client.ip}",
            s.otp_per_ip_per_hour * s.otp_max_attempts,
            "from this address",
        )
        record_key, tries_key, claim_key = _keys(request_id)
        record = _parse_record(await self._kv.get(record_key))
        if record is None:
            raise InvalidCodeError("the code is wrong or has expired; request a new one")
        tries = await self._kv.incr(tries_key, ttl=s.otp_ttl)
        if tries > s.otp_max_attempts:
            await self._kv.delete(record_key)
            raise InvalidCodeError(
                "too many wrong codes; request a new one", code="otp_attempts_exceeded"
            )
        if not verify_otp(self._secret, request_id, code, record["hash"]):
            if tries >= s.otp_max_attempts:
                await self._kv.delete(record_key)
                raise InvalidCodeError(
                    "too many wrong codes; request a new one", code="otp_attempts_exceeded"
                )
            left = s.otp_max_attempts - tries
            raise InvalidCodeError(f"the code is wrong; {left} attempt(s) left")
        # Single use: only one caller may hold the claim on a request at a time.
        if not await self._kv.set(claim_key, b"1", ttl=30, only_if_absent=True):
            raise InvalidCodeError("the code is wrong or has expired; request a new one")
        return _CheckedCode(
            request_id=request_id, phone=record["phone"], link_user=record.get("link_user", "")
        )

    async def spend(self, checked: _CheckedCode) -> None:
        record_key, tries_key, _ = _keys(checked.request_id)
        await self._kv.delete(record_key)
        await self._kv.delete(tries_key)

    async def release(self, checked: _CheckedCode) -> None:
        _, _, claim_key = _keys(checked.request_id)
        await self._kv.delete(claim_key)

    async def verify(
        self,
        request_id: str,
        code: str,
        *,
        nickname: str | None,
        device_name: str,
        client: ClientInfo,
    ) -> TokenPair:
        checked = await self.check_code(request_id, code, client)
        if checked.link_user:
            await self.release(checked)
            raise InvalidCodeError("this code links a number to an account; it cannot sign in")
        try:
            user, created = await self._users.sign_in_with_identity(
                "phone", checked.phone, nickname=nickname
            )
            pair = await self._sessions.start_session(
                str(user.id),
                device_name=device_name,
                user_agent=client.user_agent,
                ip=client.ip,
                new_user=created,
            )
        except BaseException:
            await self.release(checked)
            raise
        await self.spend(checked)
        log.info("phone sign-in", extra={"user_id": str(user.id), "new_user": created})
        return pair

    async def _limit(self, key: str, limit: int, scope: str) -> None:
        count = await self._kv.incr(key, ttl=HOUR)
        if count > limit:
            wait = int(await self._kv.ttl(key) or HOUR) + 1
            raise RateLimitedError(
                f"too many attempts {scope}; try again in {wait} s", retry_after=wait
            )


@dataclass(frozen=True)
class _CheckedCode:
    request_id: str
    phone: str
    link_user: str


def _parse_record(raw: bytes | None) -> dict[str, str] | None:
    if raw is None:
        return None
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict) or not all(
        isinstance(record.get(k), str) for k in ("phone", "hash")
    ):
        return None
    return record
