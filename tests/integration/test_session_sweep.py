"""The node's session recheck (``SessionService.inactive_among``) on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from config.settings import DatabaseSettings
from server.auth.sessions import SessionService, utcnow
from server.users.service import UserService
from storage.models import Session
from tests.support.phones import fresh_phone


async def _session(user_id: str, *, expires_in: float, revoked: bool = False) -> str:
    session = await Session.create(
        user_id=user_id,
        expires_at=utcnow() + timedelta(seconds=expires_in),
        revoked_at=utcnow() if revoked else None,
        refresh_hash=secrets.token_hex(32),
    )
    return str(session.id)


async def test_revoked_expired_and_unknown_sessions_are_inactive(db: DatabaseSettings) -> None:
    """Among thousands of a node's sessions, exactly the revoked, expired and unknown ones."""
    user, _ = await UserService().sign_in_with_identity("phone", fresh_phone(), nickname="s")
    uid = str(user.id)
    active = [await _session(uid, expires_in=3600) for _ in range(3)]
    revoked = await _session(uid, expires_in=3600, revoked=True)
    expired = await _session(uid, expires_in=-1)
    unknown = [str(uuid.uuid4()) for _ in range(2_000)]
    asked = [*unknown[:1_000], active[0], revoked, *active[1:], expired, *unknown[1_000:]]
    inactive = await SessionService.inactive_among(asked)
    assert inactive == {revoked, expired, *unknown}
    assert await SessionService.inactive_among(active) == set()
