"""One account, many identities (seed 004): sign in with a wallet, link and unlink.

Each identity (phone, e-mail, Ethereum, Substrate) belongs to one account only
and is linked the same way it signs in: by a code, a link or a signature. An
account keeps at least one verified identity, or nobody could sign in to it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from config.errors import ConflictError, NotFoundError
from server.auth.phone import ClientInfo, PhoneAuthService
from server.auth.schemas import IdentityOut, PhoneStartResponse, TokenPair
from server.auth.sessions import SessionService
from server.auth.wallets import LINK, SIGN_IN, ProvenWallet, WalletProofService
from server.users.service import UserService
from storage import outbox
from storage.models import Identity

log = logging.getLogger(__name__)


class IdentityNotFoundError(NotFoundError):
    code = "identity_not_found"


def identity_out(identity: Identity) -> IdentityOut:
    return IdentityOut(
        id=str(identity.id),
        kind=identity.kind,
        display=identity.display or identity.value,
        verified=identity.verified_at is not None,
        created_at=identity.created_at,
    )


class IdentityService:
    def __init__(
        self,
        users: UserService,
        sessions: SessionService,
        wallets: WalletProofService,
        phone: PhoneAuthService,
    ) -> None:
        self._users = users
        self._sessions = sessions
        self._wallets = wallets
        self._phone = phone

    async def list(self, user_id: str) -> list[IdentityOut]:
        rows = await Identity.filter(user_id=user_id).order_by("created_at", "id")
        return [identity_out(i) for i in rows]

    async def sign_in_with_wallet(
        self, message: str, signature: str, *, device_name: str, client: ClientInfo
    ) -> TokenPair:
        wallet = await self._wallets.prove(message, signature, purpose=SIGN_IN, user_id=None)
        returning = await self._sessions.start_session_for_identity(
            wallet.kind,
            wallet.value,
            device_name=device_name,
            user_agent=client.user_agent,
            ip=client.ip,
        )
        if returning is not None:
            return returning
        user, created = await self._users.sign_in_with_identity(
            wallet.kind, wallet.value, nickname=None, display=wallet.display
        )
        log.info("wallet sign-in", extra={"user_id": str(user.id), "chain": wallet.kind})
        return await self._sessions.start_session(
            str(user.id),
            device_name=device_name,
            user_agent=client.user_agent,
            ip=client.ip,
            new_user=created,
        )

    async def link_wallet(self, user_id: str, message: str, signature: str) -> IdentityOut:
        wallet: ProvenWallet = await self._wallets.prove(
            message, signature, purpose=LINK, user_id=user_id
        )
        return await self.attach(user_id, wallet.kind, wallet.value, wallet.display)

    async def start_phone_link(
        self, user_id: str, phone: str, region: str | None, client: ClientInfo
    ) -> PhoneStartResponse:
        return await self._phone.start(phone, region, client, link_user_id=user_id)

    async def finish_phone_link(
        self, user_id: str, request_id: str, code: str, client: ClientInfo
    ) -> IdentityOut:
        checked = await self._phone.check_code(request_id, code, client)
        if checked.link_user != user_id:
            await self._phone.release(checked)
            raise IdentityNotFoundError("this code was not sent to link a number to your account")
        try:
            linked = await self.attach(user_id, "phone", checked.phone, checked.phone)
        except BaseException:
            await self._phone.release(checked)
            raise
        await self._phone.spend(checked)
        return linked

    async def attach(self, user_id: str, kind: str, value: str, display: str) -> IdentityOut:
        """Link a proven identity; idempotent for the owner, a conflict for anyone else."""
        existing = await Identity.get_or_none(kind=kind, value=value)
        if existing is not None:
            if str(existing.user_id) != user_id:
                raise ConflictError(
                    f"this {kind} identity belongs to another account", code="identity_taken"
                )
            return identity_out(existing)
        try:
            async with in_transaction():
                identity = await Identity.create(
                    user_id=user_id,
                    kind=kind,
                    value=value,
                    display=display,
                    verified_at=datetime.now(UTC),
                )
                if kind == "phone":
                    await outbox.record(outbox.PHONE, {"user_id": user_id})
        except IntegrityError:
            raise ConflictError(
                f"this {kind} identity belongs to another account", code="identity_taken"
            ) from None
        log.info("identity linked", extra={"user_id": user_id, "kind": kind})
        return identity_out(identity)

    async def unlink(self, user_id: str, identity_id: str) -> None:
        """Remove an identity; the last verified one stays (409 ``last_identity``)."""
        async with in_transaction():
            # Lock the account's identities so two unlinks cannot both pass the check.
            await Identity.filter(user_id=user_id).select_for_update()
            identity = await Identity.filter(id=identity_id, user_id=user_id).first()
            if identity is None:
                raise IdentityNotFoundError("no such identity on your account")
            others = (
                await Identity.filter(user_id=user_id, verified_at__not_isnull=True)
                .exclude(id=identity_id)
                .count()
            )
            if identity.verified_at is not None and others == 0:
                raise ConflictError(
                    "this is the account's last verified identity; link another one first",
                    code="last_identity",
                )
            await identity.delete()
            if identity.kind == "phone":
                await outbox.record(outbox.PHONE, {"user_id": user_id})
        log.info("identity unlinked", extra={"user_id": user_id, "kind": identity.kind})
