"""Sessions and rotating refresh tokens (seed 001; OWASP ASVS 3.5 and 10.4.5).

A session is one signed-in device. Each refresh returns a new token pair and
spends the old refresh token; presenting a spent one means it was stolen or
replayed, so the whole session is revoked and its sockets are told to go.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.transactions import in_transaction

from config.errors import AuthenticationError, UnavailableError
from config.settings import AuthSettings
from crypto.tokens import (
    AccessTokenIssuer,
    InvalidTokenError,
    hash_refresh_token,
    new_refresh_token,
)
from server.auth.schemas import TokenPair
from storage import sql
from storage.kv import KeyValueStore
from storage.models import Session, SpentRefreshToken

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
        """A new session with its first refresh token: one INSERT."""
        now = utcnow()
        refresh = new_refresh_token()
        session_id = str(uuid.uuid4())
        await sql.fetch(
            "INSERT INTO sessions (id, user_id, device_name, user_agent, ip, created_at,"
            " last_used_at, expires_at, refresh_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                session_id,
                user_id,
                device_name[:128],
                user_agent[:256],
                ip[:64],
                now,
                now,
                now + timedelta(seconds=self._settings.refresh_token_ttl),
                hash_refresh_token(refresh),
            ],
        )
        return self._pair(user_id, session_id, refresh, new_user=new_user)

    async def start_session_for_identity(
        self, kind: str, value: str, *, device_name: str, user_agent: str, ip: str
    ) -> TokenPair | None:
        """A session for the owner of an identity, found and opened in one statement.

        None when no account has this identity yet (the caller creates it).
        """
        now = utcnow()
        refresh = new_refresh_token()
        session_id = str(uuid.uuid4())
        row = await sql.fetch_one(
            "INSERT INTO sessions (id, user_id, device_name, user_agent, ip, created_at,"
            " last_used_at, expires_at, refresh_hash)"
            " SELECT ?, user_id, ?, ?, ?, ?, ?, ?, ? FROM identities WHERE kind = ? AND value = ?"
            " RETURNING user_id",
            [
                session_id,
                device_name[:128],
                user_agent[:256],
                ip[:64],
                now,
                now,
                now + timedelta(seconds=self._settings.refresh_token_ttl),
                hash_refresh_token(refresh),
                kind,
                value,
            ],
        )
        if row is None:
            return None
        return self._pair(str(row["user_id"]), session_id, refresh)

    async def rotate(self, refresh_token: str) -> TokenPair:
        """Spend a refresh token for a new pair (one statement on PostgreSQL).

        A token that is already spent means two parties hold the family: the
        session is revoked (OWASP ASVS 3.5.x) and both must sign in again.
        """
        old = hash_refresh_token(refresh_token)
        fresh = new_refresh_token()
        new = hash_refresh_token(fresh)
        now = utcnow()
        row = await _swap_refresh_hash(old, new, now)
        if row is not None:
            return self._pair(str(row["user_id"]), str(row["id"]), fresh)
        spent = await SpentRefreshToken.get_or_none(token_hash=old)
        if spent is not None:
            await self.revoke(str(spent.session_id), reason="refresh_token_reused")
            raise InvalidRefreshTokenError(
                "refresh token was already used; the session has been revoked",
                code="refresh_token_reused",
            )
        if await Session.exists(refresh_hash=old):
            raise InvalidRefreshTokenError("session has ended; sign in again")
        raise InvalidRefreshTokenError("refresh token is not valid")

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
        """Refuse a still-unexpired access token whose session was revoked (one kv read).

        With the kv store unreachable, the database answers instead (one
        indexed read), so a Redis outage neither stops requests nor lets a
        revoked token through.
        """
        try:
            revoked = await self._kv.get(f"revoked-session:{session_id}") is not None
        except UnavailableError:
            revoked = not await self.is_active(session_id)
        if revoked:
            raise InvalidTokenError(
                "session has been revoked; sign in again", code="session_revoked"
            )

    async def is_active(self, session_id: str) -> bool:
        return await Session.filter(
            id=session_id, revoked_at=None, expires_at__gt=utcnow()
        ).exists()

    @staticmethod
    async def inactive_among(session_ids: list[str]) -> set[str]:
        """The ids of these sessions that are revoked, expired or gone.

        A node asks this for every socket it holds (realtime/hub.py): on
        PostgreSQL one array parameter, where the ORM's ``IN`` list of
        thousands of literals cost the node 30 ms of CPU at 5,000 sockets.
        """
        if sql.is_postgres():
            rows = await sql.fetch(_ACTIVE_AMONG_POSTGRES, [session_ids, utcnow()])
            active = {str(row["id"]) for row in rows}
        else:
            active = {
                str(a)
                for a in await Session.filter(
                    id__in=session_ids, revoked_at=None, expires_at__gt=utcnow()
                ).values_list("id", flat=True)
            }
        return set(session_ids) - active

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


_ACTIVE_AMONG_POSTGRES = (
    "SELECT id FROM sessions WHERE id = ANY(?::uuid[]) AND revoked_at IS NULL AND expires_at > ?"
)

_SWAP_POSTGRES = """
WITH s AS (
    UPDATE sessions SET refresh_hash = ?, last_used_at = ?
    WHERE refresh_hash = ? AND revoked_at IS NULL AND expires_at > ?
    RETURNING id, user_id
), spent AS (
    INSERT INTO spent_refresh_tokens (token_hash, session_id, spent_at)
    SELECT ?, id, ? FROM s
)
SELECT id, user_id FROM s
"""

_SWAP = """
UPDATE sessions SET refresh_hash = ?, last_used_at = ?
WHERE refresh_hash = ? AND revoked_at IS NULL AND expires_at > ?
RETURNING id, user_id
"""


async def _swap_refresh_hash(old: str, new: str, now: datetime) -> dict[str, Any] | None:
    """Replace the session's current refresh hash and file the old one as spent, atomically."""
    if sql.is_postgres():
        return await sql.fetch_one(_SWAP_POSTGRES, [new, now, old, now, old, now])
    async with in_transaction() as conn:
        row = await sql.fetch_one(_SWAP, [new, now, old, now], conn=conn)
        if row is not None:
            await sql.fetch(
                "INSERT INTO spent_refresh_tokens (token_hash, session_id, spent_at)"
                " VALUES (?, ?, ?)",
                [old, row["id"], now],
                conn=conn,
            )
        return row
