"""Sessions and rotating refresh tokens (seed 001; OWASP ASVS 3.5 and 10.4.5).

A session is one signed-in device. Each refresh returns a new token pair and
spends the old refresh token; presenting a spent one means it was stolen or
replayed, so the whole session is revoked and its sockets are told to go.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from tortoise.transactions import in_transaction

from config.errors import AuthenticationError
from config.settings import AuthSettings
from crypto.tokens import (
    AccessTokenIssuer,
    InvalidTokenError,
    hash_refresh_token,
    new_refresh_token,
)
from server.auth.schemas import TokenPair
from storage.kv import KeyValueStore
from storage.models import RefreshToken, Session

log = logging.getLogger(__name__)

SessionRevokedHook = Callable[[str, str], Awaitable[None]]
# Seconds a revocation marker outlives the access tokens it blocks (clock leeway).
REVOCATION_MARGIN = 60


class InvalidRefreshTokenError(AuthenticationError):
    code = "invalid_refresh_token"


def utcnow() -> datetime:
    return datetime.now(UTC)


class SessionService:
    """Creates sessions, rotates their refresh tokens and revokes them."""

    def __init__(
        self,
        settings: AuthSettings,
        issuer: AccessTokenIssuer,
        kv: KeyValueStore,
        on_revoked: SessionRevokedHook | None = None,
    ) -> None:
        self._settings = settings
        self._issuer = issuer
        self._kv = kv
        self._on_revoked = on_revoked

    async def start_session(
        self, user_id: str, *, device_name: str, user_agent: str, ip: str, new_user: bool = False
    ) -> TokenPair:
        now = utcnow()
        refresh = new_refresh_token()
        async with in_transaction():
            session = await Session.create(
                user_id=user_id,
                device_name=device_name[:128],
                user_agent=user_agent[:256],
                ip=ip[:64],
                expires_at=now + timedelta(seconds=self._settings.refresh_token_ttl),
            )
            await RefreshToken.create(session=session, token_hash=hash_refresh_token(refresh))
        return self._pair(user_id, str(session.id), refresh, new_user=new_user)

    async def rotate(self, refresh_token: str) -> TokenPair:
        token_hash = hash_refresh_token(refresh_token)
        now = utcnow()
        async with in_transaction():
            spent = await RefreshToken.filter(token_hash=token_hash, used_at=None).update(
                used_at=now
            )
            row = await RefreshToken.get_or_none(token_hash=token_hash).select_related("session")
            if row is None:
                raise InvalidRefreshTokenError("refresh token is not valid")
            session = row.session
            if not spent:
                # A spent token came back: treat the family as compromised.
                reused = True
            else:
                reused = False
                if session.revoked_at is not None or session.expires_at <= now:
                    raise InvalidRefreshTokenError("session has ended; sign in again")
                fresh = new_refresh_token()
                await RefreshToken.create(session=session, token_hash=hash_refresh_token(fresh))
                await Session.filter(id=session.id).update(last_used_at=now)
        if reused:
            await self.revoke(str(session.id), reason="refresh_token_reused")
            raise InvalidRefreshTokenError(
                "refresh token was already used; the session has been revoked",
                code="refresh_token_reused",
            )
        return self._pair(str(session.user_id), str(session.id), fresh)

    async def revoke(self, session_id: str, *, reason: str) -> bool:
        changed = await Session.filter(id=session_id, revoked_at=None).update(
            revoked_at=utcnow(), revoked_reason=reason
        )
        if changed:
            session = await Session.get(id=session_id)
            log.info("session revoked", extra={"session_id": session_id, "reason": reason})
            # Access tokens of the session stay signed until they expire; this
            # marker makes every node refuse them at once (ensure_not_revoked).
            await self._kv.set(
                f"revoked-session:{session_id}",
                b"1",
                ttl=self._issuer.ttl + REVOCATION_MARGIN,
            )
            if self._on_revoked is not None:
                await self._on_revoked(str(session.user_id), session_id)
        return bool(changed)

    async def revoke_all(self, user_id: str, *, reason: str, keep: str | None = None) -> int:
        """Revoke every active session of a user (but ``keep``); the number revoked."""
        query = Session.filter(user_id=user_id, revoked_at=None)
        if keep is not None:
            query = query.exclude(id=keep)
        ids = [str(i) for i in await query.values_list("id", flat=True)]
        for session_id in ids:
            await self.revoke(session_id, reason=reason)
        return len(ids)

    async def list_sessions(self, user_id: str) -> list[Session]:
        """Active sessions of a user, most recently used first."""
        return await Session.filter(
            user_id=user_id, revoked_at=None, expires_at__gt=utcnow()
        ).order_by("-last_used_at")

    async def revoke_own(self, user_id: str, session_id: str, *, reason: str) -> bool:
        """Revoke a session of this user; False when it is not theirs or already ended."""
        if not await Session.filter(id=session_id, user_id=user_id, revoked_at=None).exists():
            return False
        return await self.revoke(session_id, reason=reason)

    async def ensure_not_revoked(self, session_id: str) -> None:
        """Refuse a still-unexpired access token whose session was revoked (one kv read)."""
        if await self._kv.get(f"revoked-session:{session_id}") is not None:
            raise InvalidTokenError(
                "session has been revoked; sign in again", code="session_revoked"
            )

    async def is_active(self, session_id: str) -> bool:
        return await Session.filter(
            id=session_id, revoked_at=None, expires_at__gt=utcnow()
        ).exists()

    async def inactive_among(self, session_ids: list[str]) -> set[str]:
        """The ids of these sessions that are revoked, expired or gone."""
        active = await Session.filter(
            id__in=session_ids, revoked_at=None, expires_at__gt=utcnow()
        ).values_list("id", flat=True)
        return set(session_ids) - {str(a) for a in active}

    def _pair(
        self, user_id: str, session_id: str, refresh: str, *, new_user: bool = False
    ) -> TokenPair:
        return TokenPair(
            access_token=self._issuer.issue(user_id=user_id, session_id=session_id),
            refresh_token=refresh,
            expires_in=self._issuer.ttl,
            user_id=user_id,
            session_id=session_id,
            new_user=new_user,
        )
