"""E-mail + password accounts (seed 001), e-mail verification and password reset (seeds 003, 004).

Registration never says whether an address is already in use: it always
answers "check your e-mail", and the mail says either "confirm" or "you already
have an account". An account signs in with its password only once an address
is verified; until then a fresh link can be asked for by address, and that
answer says nothing about the address either. Sign-in failures are one
``invalid_credentials`` whatever went wrong, and an unknown account costs the
same argon2 work as a wrong password.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio
import email_validator
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Subquery
from tortoise.transactions import in_transaction

from config.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    PermissionDeniedError,
    RateLimitedError,
)
from config.settings import AuthSettings
from crypto.passwords import PasswordHasher, validate_password_strength
from server.auth.email import EmailMessage, EmailSender
from server.auth.phone import ClientInfo
from server.auth.schemas import TokenPair
from server.auth.sessions import SessionService
from server.users.service import new_user_code
from storage import outbox
from storage.kv import KeyValueStore
from storage.models import IDENTITY_VALUE_LENGTH, LOGIN_KEY_LENGTH, ActionToken, Identity, User

log = logging.getLogger(__name__)

VERIFY_EMAIL = "verify_email"
RESET_PASSWORD = "reset_password"  # noqa: S105 - a purpose name, not a secret
LOGIN_WINDOW = 15 * 60
RESEND_WINDOW = 3600
# Accounts a resend mails a link for when several registrations await one
# address (someone else may have registered with it first): the newest ones.
RESEND_ACCOUNTS_PER_ADDRESS = 3


class InvalidCredentialsError(AuthenticationError):
    code = "invalid_credentials"


class InvalidLinkError(InvalidRequestError):
    code = "invalid_link"


def normalize_email(raw: str) -> tuple[str, str]:
    """(uniqueness key, display form) of an address; the key is lower case (seed 004)."""
    try:
        result = email_validator.validate_email(raw, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise InvalidRequestError(f"email: {exc}", code="invalid_email") from None
    return result.normalized.lower(), result.normalized


def _forbidden(login: str | None, *emails: str) -> tuple[str, ...]:
    """What a password must not be: the login, an address or its local part."""
    words = [login or ""]
    for email in emails:
        words += [email, email.split("@")[0]]
    return tuple(w for w in words if w)


async def _forbidden_for(user_id: str) -> tuple[str, ...]:
    user = await User.get(id=user_id)
    emails = await Identity.filter(user_id=user_id, kind="email").values_list("value", flat=True)
    return _forbidden(user.login, *(str(e) for e in emails))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PasswordPool:
    """argon2 runs in threads, a bounded number at once, so the event loop never waits on it."""

    def __init__(self, hasher: PasswordHasher, concurrency: int) -> None:
        self.hasher = hasher
        self._limiter = anyio.CapacityLimiter(concurrency)

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self.hasher.hash, password, limiter=self._limiter)

    async def verify(self, stored_hash: str, password: str) -> bool:
        return await anyio.to_thread.run_sync(
            self.hasher.verify, stored_hash, password, limiter=self._limiter
        )

    async def verify_dummy(self, password: str) -> None:
        await anyio.to_thread.run_sync(self.hasher.verify_dummy, password, limiter=self._limiter)


@dataclass(frozen=True)
class VerifiedEmail:
    user_id: str
    email: str


class EmailPasswordService:
    def __init__(
        self,
        settings: AuthSettings,
        public_url: str,
        kv: KeyValueStore,
        mailer: EmailSender,
        passwords: PasswordPool,
        sessions: SessionService,
    ) -> None:
        self._settings = settings
        self._public_url = public_url
        self._kv = kv
        self._mailer = mailer
        self._passwords = passwords
        self._sessions = sessions

    # -- registration and verification ---------------------------------------

    async def register(
        self, *, login: str, password: str, email: str, first_name: str, last_name: str
    ) -> str:
        """Create the account (unverified) and mail a link; returns the display address."""
        key, display = normalize_email(email)
        validate_password_strength(password, forbidden=_forbidden(login, key))
        await self._count_verification_mail(key)
        if await Identity.exists(kind="email", value=key):
            # Spend the same argon2 work as a new account, so the answer's timing
            # does not tell whether the address is taken.
            await self._passwords.hash(password)
            await self._send(
                display,
                "Your Parley account",
                "Someone (maybe you) tried to register a Parley account with this address,\n"
                "which already has one. Sign in, or reset your password here:\n"
                f"{self._public_url}/v1/auth/email/password-reset\n\n"
                "If it was not you, ignore this message.",
            )
            return display
        password_hash = await self._passwords.hash(password)
        try:
            async with in_transaction():
                user = await User.create(
                    code=new_user_code(),
                    nickname=login,
                    login=login,
                    login_key=login.lower(),
                    first_name=first_name,
                    last_name=last_name,
                    password_hash=password_hash,
                )
                token = await self._new_token(str(user.id), VERIFY_EMAIL, key, display)
                await outbox.record(outbox.PERSON, {"user_id": str(user.id)})
        except IntegrityError:
            raise ConflictError("login: already taken", code="login_taken") from None
        await self._send_verification(display, token, login=login)
        return display

    async def change_email(self, user_id: str, email: str) -> str:
        """Mail a link to a new address; it replaces the current one once verified."""
        key, display = normalize_email(email)
        owner = await Identity.get_or_none(kind="email", value=key)
        if owner is not None and str(owner.user_id) == user_id:
            return display
        await self._count_verification_mail(key)
        token = await self._new_token(user_id, VERIFY_EMAIL, key, display)
        await self._send_verification(display, token)
        return display

    async def accept_verification_resend(self, email: str, client: ClientInfo) -> str:
        """Check and count a request for a fresh link; the address key to resend for."""
        s = self._settings
        return await self._accept_mail_request(
            "verify-resend",
            email,
            client,
            s.verify_resend_per_ip_per_hour,
            s.verify_resend_per_email_per_hour,
        )

    async def resend_verification(self, key: str) -> None:
        """Mail a fresh link to each account still waiting on this address; its older links die.

        Runs after the answer is sent: whether an account exists, and whether
        the mail provider took the message, must not show in the answer or its
        timing. An address some account has verified gets nothing.
        """
        if len(key) > IDENTITY_VALUE_LENGTH:  # lower() can lengthen; no column holds it
            return
        try:
            if await Identity.exists(kind="email", value=key, verified_at__not_isnull=True):
                return
            verified_users = Identity.filter(verified_at__not_isnull=True).values_list(
                "user_id", flat=True
            )
            # Only accounts with nothing verified are stuck; a signed-in account
            # asks again through POST /v1/me/email.
            pending = (
                await ActionToken.filter(purpose=VERIFY_EMAIL, email=key)
                .exclude(user_id__in=Subquery(verified_users))
                .order_by("-created_at")
                .select_related("user")
            )
            newest: dict[str, ActionToken] = {}
            for row in pending:
                newest.setdefault(str(row.user_id), row)
            for user_id, row in list(newest.items())[:RESEND_ACCOUNTS_PER_ADDRESS]:
                display = row.email_display or key
                now = datetime.now(UTC)
                async with in_transaction():
                    # Only the newest link works: the ones mailed before expire now.
                    # The row lock keeps two resends at once from leaving two live.
                    await User.select_for_update().get(id=user_id)
                    await ActionToken.filter(
                        user_id=user_id, purpose=VERIFY_EMAIL, used_at=None, expires_at__gt=now
                    ).update(expires_at=now)
                    token = await self._new_token(user_id, VERIFY_EMAIL, key, display)
                await self._send_verification(display, token, login=row.user.login)
        except Exception:
            log.warning("verification resend failed", exc_info=True)

    async def verify_email(self, token: str) -> VerifiedEmail:
        """Spend a verification link: the address becomes the account's e-mail identity."""
        row = await self._spend(token, VERIFY_EMAIL)
        assert row.email is not None
        now = datetime.now(UTC)
        try:
            async with in_transaction():
                current = await Identity.get_or_none(user_id=row.user_id, kind="email")
                if current is None:
                    await Identity.create(
                        user_id=row.user_id,
                        kind="email",
                        value=row.email,
                        display=row.email_display or row.email,
                        verified_at=now,
                    )
                else:
                    current.value = row.email
                    current.display = row.email_display or row.email
                    current.verified_at = now
                    await current.save(update_fields=["value", "display", "verified_at"])
        except IntegrityError:
            raise ConflictError(
                "email: this address now belongs to another account", code="identity_taken"
            ) from None
        # A reset link mailed to the old address must not outlive the change.
        await self._expire_resets(str(row.user_id))
        log.info("e-mail verified", extra={"user_id": str(row.user_id)})
        return VerifiedEmail(user_id=str(row.user_id), email=row.email_display or row.email)

    # -- sign-in ------------------------------------------------------------

    async def sign_in(
        self, identifier: str, password: str, *, device_name: str, client: ClientInfo
    ) -> TokenPair:
        ident = identifier.strip().lower()
        ip_key = f"rl:login:ip:{client.ip}"
        await self._refuse_if_over(ip_key, self._settings.login_failures_per_ip)
        user = await self._find_account(ident)
        # Failures count per account, whichever identifier (login or e-mail) named
        # it; unknown identifiers count per text so they cost the same.
        subject = str(user.id) if user is not None else ident
        account_key = f"rl:login:acct:{hashlib.sha256(subject.encode()).hexdigest()[:32]}"
        await self._refuse_if_over(account_key, self._settings.login_failures_per_account)
        if user is None or user.password_hash is None:
            await self._passwords.verify_dummy(password)
            await self._count_failure(account_key, ip_key)
            raise InvalidCredentialsError("login or password is wrong")
        if not await self._passwords.verify(user.password_hash, password):
            await self._count_failure(account_key, ip_key)
            raise InvalidCredentialsError("login or password is wrong")
        # Only the password's owner gets past this point, so saying more is safe.
        if not await Identity.filter(user_id=user.id, verified_at__not_isnull=True).exists():
            raise PermissionDeniedError(
                "confirm your e-mail address first: follow the link we sent, or ask for a new one",
                code="email_not_verified",
            )
        if self._passwords.hasher.needs_rehash(user.password_hash):
            user.password_hash = await self._passwords.hash(password)
            await user.save(update_fields=["password_hash"])
        await self._kv.delete(account_key)
        return await self._sessions.start_session(
            str(user.id), device_name=device_name, user_agent=client.user_agent, ip=client.ip
        )

    async def _find_account(self, ident: str) -> User | None:
        # What the form allows may be longer than any stored value (and lower()
        # can lengthen text: "İ" becomes two characters): no account has it,
        # and the database is never asked for a value its column cannot hold.
        if "@" in ident:
            if len(ident) > IDENTITY_VALUE_LENGTH:
                return None
            identity = await Identity.get_or_none(
                kind="email", value=ident, verified_at__not_isnull=True
            ).select_related("user")
            return identity.user if identity is not None else None
        if len(ident) > LOGIN_KEY_LENGTH:
            return None
        return await User.get_or_none(login_key=ident)

    # -- passwords ----------------------------------------------------------

    async def accept_password_reset(self, email: str, client: ClientInfo) -> str:
        """Check and count a reset request; the address key to mail."""
        s = self._settings
        return await self._accept_mail_request(
            "password-reset",
            email,
            client,
            s.password_reset_per_ip_per_hour,
            s.password_reset_per_email_per_hour,
        )

    async def _count_verification_mail(self, key: str) -> None:
        """Registrations and address changes mail an address too: at most
        ``verify_resend_per_email_per_hour`` of them an hour, so nobody can bury an
        inbox under confirmation mails by registering logins in a loop."""
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        await self._count_request(
            f"rl:verify-mail:email:{digest}",
            self._settings.verify_resend_per_email_per_hour,
            "for this e-mail address",
        )

    async def _accept_mail_request(
        self, action: str, email: str, client: ClientInfo, per_ip: int, per_email: int
    ) -> str:
        """Count a request that may mail ``email``, per client and per address; its key.

        Every well-formed request counts, whether or not an account has the
        address, so neither a refusal nor its absence says anything about
        accounts, and nobody can bury an address under mails.
        """
        key, _ = normalize_email(email)
        await self._count_request(f"rl:{action}:ip:{client.ip}", per_ip, "from this address")
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        await self._count_request(
            f"rl:{action}:email:{digest}", per_email, "for this e-mail address"
        )
        return key

    async def request_password_reset(self, key: str) -> None:
        """Mail a reset link if a verified address matches.

        Runs after the answer is sent, like :meth:`resend_verification`: the
        lookup, the new link and the mail provider's delay (or failure) would
        otherwise show in the answer's timing whether the account exists.
        """
        if len(key) > IDENTITY_VALUE_LENGTH:  # lower() can lengthen; no column holds it
            return
        try:
            identity = await Identity.get_or_none(
                kind="email", value=key, verified_at__not_isnull=True
            )
            if identity is None:
                return
            token = await self._new_token(
                str(identity.user_id), RESET_PASSWORD, key, identity.display
            )
            await self._send(
                identity.display or key,
                "Reset your Parley password",
                "Follow this link to choose a new password (it works once, for "
                f"{self._settings.password_reset_ttl // 60} minutes):\n"
                f"{self._public_url}/v1/auth/email/password-reset/confirm#token={token}\n\n"
                "If you did not ask for this, ignore this message.",
            )
        except Exception:
            log.warning("password reset mail failed", exc_info=True)

    async def reset_password(self, token: str, new_password: str) -> None:
        """Spend a reset link: set the password and end every session of the account."""
        pending = await ActionToken.get_or_none(
            token_hash=_token_hash(token),
            purpose=RESET_PASSWORD,
            used_at=None,
            expires_at__gt=datetime.now(UTC),
        ).select_related("user")
        if pending is not None:
            # Check the new password before spending the link, so a rejected
            # password leaves the link usable for a second try.
            validate_password_strength(
                new_password, forbidden=await _forbidden_for(str(pending.user_id))
            )
        row = await self._spend(token, RESET_PASSWORD)
        user = await User.get(id=row.user_id)
        user.password_hash = await self._passwords.hash(new_password)
        await user.save(update_fields=["password_hash", "updated_at"])
        await self._expire_resets(str(user.id))  # the other links mailed before this one
        await self._sessions.revoke_all(str(user.id), reason="password_reset")

    async def set_password(self, user_id: str, current: str | None, new_password: str) -> None:
        """Change (or first set) the password of a signed-in account."""
        user = await User.get(id=user_id)
        if user.password_hash is not None and (
            current is None or not await self._passwords.verify(user.password_hash, current)
        ):
            raise InvalidCredentialsError("current_password: wrong password")
        validate_password_strength(new_password, forbidden=await _forbidden_for(user_id))
        user.password_hash = await self._passwords.hash(new_password)
        await user.save(update_fields=["password_hash", "updated_at"])
        await self._expire_resets(user_id)

    # -- helpers ------------------------------------------------------------

    async def _expire_resets(self, user_id: str) -> None:
        """Unused reset links of the account stop working (the password or address changed)."""
        now = datetime.now(UTC)
        await ActionToken.filter(
            user_id=user_id, purpose=RESET_PASSWORD, used_at=None, expires_at__gt=now
        ).update(expires_at=now)

    async def _new_token(self, user_id: str, purpose: str, email: str, display: str) -> str:
        token = secrets.token_urlsafe(32)
        ttl = (
            self._settings.email_verify_ttl
            if purpose == VERIFY_EMAIL
            else self._settings.password_reset_ttl
        )
        await ActionToken.create(
            user_id=user_id,
            purpose=purpose,
            token_hash=_token_hash(token),
            email=email,
            email_display=display,
            expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
        )
        return token

    async def _spend(self, token: str, purpose: str) -> ActionToken:
        """Mark a link used, once: a second use, an expired or a foreign link fails alike."""
        now = datetime.now(UTC)
        token_hash = _token_hash(token)
        spent = await ActionToken.filter(
            token_hash=token_hash, purpose=purpose, used_at=None, expires_at__gt=now
        ).update(used_at=now)
        if not spent:
            raise InvalidLinkError("this link is invalid, used or expired; ask for a new one")
        return await ActionToken.get(token_hash=token_hash)

    async def _send_verification(
        self, display: str, token: str, *, login: str | None = None
    ) -> None:
        # Naming the login lets the owner of the address tell their own
        # registration from one someone else made with it.
        account = f" for the Parley account {login}" if login else ""
        await self._send(
            display,
            "Confirm your e-mail for Parley",
            f"Follow this link to confirm your address{account} (it works once, for "
            f"{self._settings.email_verify_ttl // 3600} hours):\n"
            f"{self._public_url}/v1/auth/email/verify#token={token}\n\n"
            "If you did not ask for this, ignore this message.",
        )

    async def _send(self, to: str, subject: str, text: str) -> None:
        await self._mailer.send(EmailMessage(to=to, subject=subject, text=text))

    async def _refuse_if_over(self, key: str, limit: int) -> None:
        raw = await self._kv.get(key)
        if raw is not None and int(raw) >= limit:
            wait = int(await self._kv.ttl(key) or LOGIN_WINDOW) + 1
            raise RateLimitedError(
                f"too many failed sign-ins; try again in {wait} s", retry_after=wait
            )

    async def _count_request(self, key: str, limit: int, scope: str) -> None:
        count = await self._kv.incr(key, ttl=RESEND_WINDOW)
        if count > limit:
            wait = int(await self._kv.ttl(key) or RESEND_WINDOW) + 1
            raise RateLimitedError(
                f"too many requests {scope}; try again in {wait} s", retry_after=wait
            )

    async def _count_failure(self, *keys: str) -> None:
        for key in keys:
            await self._kv.incr(key, ttl=LOGIN_WINDOW)
