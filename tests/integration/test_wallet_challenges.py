"""Wallet challenges and seed 004's clean-up routine on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import sr25519
from eth_account import Account
from eth_account.messages import encode_defunct

from config.settings import AuthSettings, DatabaseSettings
from crypto.wallets import encode_ss58
from server.auth.cleanup import clean_up
from server.auth.wallets import SIGN_IN, InvalidChallengeError, WalletProofService
from server.users.service import UserService, new_user_code
from storage.models import ActionToken, Identity, Session, User, WalletChallenge
from tests.support.phones import fresh_phone

PUBLIC_URL = "https://chat.parley.test"
DAY = timedelta(days=1)
SETTINGS = AuthSettings(
    wallet_challenge_ttl=300, ethereum_chain_ids="1", unverified_account_ttl=7 * 86400
)

Signer = tuple[str, str, Callable[[str], str]]  # chain, address, sign


def eth_signer() -> Signer:
    account = Account.create()

    def sign(text: str) -> str:
        return "0x" + bytes(account.sign_message(encode_defunct(text=text)).signature).hex()

    return "ethereum", str(account.address), sign


def sr25519_signer() -> Signer:
    public, private = sr25519.pair_from_seed(os.urandom(32))

    def sign(text: str) -> str:
        return "0x" + bytes(sr25519.sign((public, private), text.encode())).hex()

    return "substrate", encode_ss58(bytes(public), 42), sign


@pytest.fixture
async def empty_db(db: DatabaseSettings) -> DatabaseSettings:
    # The shared `db` fixture empties users and what cascades from them, not
    # sign-in challenges (no user) or action tokens; start from none of either.
    await WalletChallenge.all().delete()
    await ActionToken.all().delete()
    return db


@pytest.fixture
def proofs(empty_db: DatabaseSettings) -> WalletProofService:
    return WalletProofService(SETTINGS, PUBLIC_URL)


async def _challenge(proofs: WalletProofService, signer: Signer) -> tuple[str, str, str]:
    """A sign-in challenge for ``signer``: its nonce, message and signature."""
    chain, address, sign = signer
    issued = await proofs.challenge(
        chain=chain, address=address, chain_id=None, purpose=SIGN_IN, user_id=None
    )
    return issued.nonce, issued.message, sign(issued.message)


async def _set_times(nonce: str, **times: datetime | None) -> None:
    assert await WalletChallenge.filter(nonce=nonce).update(**times) == 1


@pytest.mark.parametrize("make_signer", [eth_signer, sr25519_signer], ids=["ethereum", "sr25519"])
async def test_expired_challenge_is_refused(
    proofs: WalletProofService, make_signer: Callable[[], Signer]
) -> None:
    """A correctly signed challenge past its expires_at is invalid_challenge and stays unspent."""
    signer = make_signer()
    stale_nonce, stale_message, stale_signature = await _challenge(proofs, signer)
    _, fresh_message, fresh_signature = await _challenge(proofs, signer)
    await _set_times(stale_nonce, expires_at=datetime.now(UTC) - timedelta(seconds=1))

    with pytest.raises(InvalidChallengeError):
        await proofs.prove(stale_message, stale_signature, purpose=SIGN_IN, user_id=None)
    assert await WalletChallenge.filter(used_at__not_isnull=True).count() == 0

    proven = await proofs.prove(fresh_message, fresh_signature, purpose=SIGN_IN, user_id=None)
    assert (proven.kind, proven.display) == (signer[0], signer[1])


async def test_clean_up_deletes_old_challenges_and_keeps_recent_ones(
    proofs: WalletProofService,
) -> None:
    """Challenges expired or used over a day ago go; fresh, recently expired or used stay."""
    now = datetime.now(UTC)
    cases = {
        # name: (expires_at, used_at, deleted)
        "expired two days ago": (now - 2 * DAY, None, True),
        "used two days ago": (now - 2 * DAY + timedelta(minutes=4), now - 2 * DAY, True),
        "used a day and a minute ago": (
            now - DAY + timedelta(minutes=3),
            now - DAY - timedelta(minutes=1),
            True,
        ),
        "expired an hour ago": (now - timedelta(hours=1), None, False),
        "used an hour ago": (now - timedelta(minutes=56), now - timedelta(hours=1), False),
        "fresh": (now + timedelta(minutes=5), None, False),
    }
    nonces: dict[str, str] = {}
    for name, (expires_at, used_at, _) in cases.items():
        nonces[name], _, _ = await _challenge(proofs, eth_signer())
        await _set_times(nonces[name], expires_at=expires_at, used_at=used_at)

    report = await clean_up(SETTINGS, now=now)

    left = {str(n) for n in await WalletChallenge.all().values_list("nonce", flat=True)}
    assert {name for name, nonce in nonces.items() if nonce in left} == {
        name for name, case in cases.items() if not case[2]
    }
    assert report.challenges == sum(case[2] for case in cases.values())
    assert (await clean_up(SETTINGS, now=now)).challenges == 0


async def test_clean_up_deletes_expired_action_tokens(empty_db: DatabaseSettings) -> None:
    """E-mailed links expired or used over a day ago go; live and recently expired ones stay."""
    now = datetime.now(UTC)
    user, _ = await UserService().sign_in_with_identity("phone", fresh_phone(), nickname=None)
    cases = {
        "expired two days ago": (now - 2 * DAY, None, True),
        "used two days ago": (now - 2 * DAY + timedelta(hours=1), now - 2 * DAY, True),
        "expired an hour ago": (now - timedelta(hours=1), None, False),
        "used an hour ago": (now + timedelta(hours=23), now - timedelta(hours=1), False),
        "live": (now + timedelta(hours=1), None, False),
    }
    hashes: dict[str, str] = {}
    for name, (expires_at, used_at, _) in cases.items():
        token = await ActionToken.create(
            user_id=user.id,
            purpose="verify_email",
            token_hash=secrets.token_hex(32),
            email="someone@example.test",
            email_display="someone@example.test",
            expires_at=expires_at,
            used_at=used_at,
        )
        hashes[name] = token.token_hash

    report = await clean_up(SETTINGS, now=now)

    left = {str(h) for h in await ActionToken.all().values_list("token_hash", flat=True)}
    assert {name for name, h in hashes.items() if h in left} == {
        name for name, case in cases.items() if not case[2]
    }
    assert report.links == sum(case[2] for case in cases.values())


async def test_clean_up_deletes_old_accounts_without_a_verified_identity(
    empty_db: DatabaseSettings,
) -> None:
    """Accounts older than unverified_account_ttl with nothing verified go; others stay."""
    now = datetime.now(UTC)
    old = now - timedelta(seconds=SETTINGS.unverified_account_ttl) - timedelta(hours=1)
    users = UserService()
    verified_old, _ = await users.sign_in_with_identity("phone", fresh_phone(), nickname="v")
    bare_old = await User.create(code=new_user_code())
    unverified_old = await User.create(code=new_user_code())
    await Identity.create(
        user=unverified_old, kind="email", value="never@example.test", verified_at=None
    )
    bare_young = await User.create(code=new_user_code())
    for user in (verified_old, bare_old, unverified_old):
        assert await User.filter(id=user.id).update(created_at=old) == 1
    await Session.create(
        user_id=bare_old.id, expires_at=now + DAY, refresh_hash=secrets.token_hex(32)
    )

    report = await clean_up(SETTINGS, now=now)

    left = {str(i) for i in await User.all().values_list("id", flat=True)}
    assert left == {str(verified_old.id), str(bare_young.id)}
    # Tortoise counts SQLite deletes by total_changes, so cascaded rows add to this.
    assert report.accounts >= 2
    # What hung off the deleted accounts went with them.
    assert await Identity.filter(user_id=unverified_old.id).count() == 0
    assert await Session.filter(user_id=bare_old.id).count() == 0


async def test_clean_up_deletes_sessions_ended_over_30_days_ago(
    empty_db: DatabaseSettings,
) -> None:
    """Sessions revoked or expired more than 30 days ago go; recent and live ones stay."""
    now = datetime.now(UTC)
    user, _ = await UserService().sign_in_with_identity("phone", fresh_phone(), nickname=None)
    month = timedelta(days=30)
    cases = {
        "revoked 31 days ago": (now + DAY, now - month - DAY, True),
        "expired 31 days ago": (now - month - DAY, None, True),
        "revoked 29 days ago": (now + DAY, now - month + DAY, False),
        "expired 29 days ago": (now - month + DAY, None, False),
        "live": (now + DAY, None, False),
    }
    ids: dict[str, str] = {}
    for name, (expires_at, revoked_at, _) in cases.items():
        session = await Session.create(
            user_id=user.id,
            expires_at=expires_at,
            revoked_at=revoked_at,
            device_name=name,
            refresh_hash=secrets.token_hex(32),
        )
        ids[name] = str(session.id)

    report = await clean_up(SETTINGS, now=now)

    left = {str(i) for i in await Session.all().values_list("id", flat=True)}
    assert {name for name, i in ids.items() if i in left} == {
        name for name, case in cases.items() if not case[2]
    }
    assert report.sessions == 2
    assert report.accounts == 0 and await User.exists(id=user.id)
