"""Seed 004's clean-up routines: expired challenges and links, ended sessions,
and accounts that never verified anything.

Every node runs the loop; a kv lock lets one node do each round, and every
delete is idempotent anyway, so a lost lock costs only duplicate work.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tortoise.expressions import Q, Subquery
from tortoise.transactions import in_transaction

from config.settings import AuthSettings
from server.auth.email_password import VERIFY_EMAIL
from storage import outbox
from storage.kv import KeyValueStore
from storage.models import ActionToken, Identity, Session, User, WalletChallenge

log = logging.getLogger(__name__)

# Ended sessions stay listable for a while (audit), then go.
SESSION_RETENTION = timedelta(days=30)
# Spent or expired challenges and links are kept briefly for support questions.
SPENT_RETENTION = timedelta(days=1)


@dataclass(frozen=True)
class CleanupReport:
    challenges: int
    links: int
    sessions: int
    accounts: int


async def clean_up(settings: AuthSettings, now: datetime | None = None) -> CleanupReport:
    """One round; safe to run on several nodes at once."""
    now = now or datetime.now(UTC)
    challenges = await WalletChallenge.filter(
        Q(expires_at__lt=now - SPENT_RETENTION) | Q(used_at__lt=now - SPENT_RETENTION)
    ).delete()
    verified_users = Identity.filter(verified_at__not_isnull=True).values_list("user_id", flat=True)
    # The unused verification links of an account with nothing verified hold the
    # only copy of its address, which a resend looks it up by: they stay, and go
    # with the account.
    awaiting = Q(purpose=VERIFY_EMAIL, used_at__isnull=True) & ~Q(
        user_id__in=Subquery(verified_users)
    )
    links = (
        await ActionToken.filter(
            Q(expires_at__lt=now - SPENT_RETENTION) | Q(used_at__lt=now - SPENT_RETENTION)
        )
        .exclude(awaiting)
        .delete()
    )
    sessions = await Session.filter(
        Q(expires_at__lt=now - SESSION_RETENTION) | Q(revoked_at__lt=now - SESSION_RETENTION)
    ).delete()
    cutoff = now - timedelta(seconds=settings.unverified_account_ttl)
    stale_ids = (
        await User.filter(created_at__lt=cutoff)
        .exclude(id__in=Subquery(verified_users))
        .values_list("id", flat=True)
    )
    accounts = 0
    if stale_ids:
        async with in_transaction():
            accounts = await User.filter(id__in=list(stale_ids)).delete()
            await outbox.record_many(outbox.PERSON, [{"user_id": str(i)} for i in stale_ids])
    report = CleanupReport(challenges, links, sessions, accounts)
    if any((challenges, links, sessions, accounts)):
        log.info("clean-up", extra=report.__dict__)
    return report


async def run_cleanup_loop(settings: AuthSettings, kv: KeyValueStore) -> None:
    """Background task: a round every ``cleanup_interval`` seconds on one node."""
    while True:
        try:
            if await kv.set(
                "cleanup:lock", b"1", ttl=settings.cleanup_interval, only_if_absent=True
            ):
                await clean_up(settings)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("clean-up round failed", exc_info=True)
        await asyncio.sleep(settings.cleanup_interval)
