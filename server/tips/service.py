"""Tips (seed 003): prepare an ETH transfer, take it back signed, follow it to confirmation.

Prepare: both people need a linked Ethereum address; the amount becomes wei
exactly; nonce, gas and EIP-1559 fees come from the node, and the sender's
balance must cover value + gas limit x max fee. The answer is the unsigned
transaction for the wallet. Submit: a signed raw transaction (checked against
the prepared tip, then broadcast) or the hash of one the wallet broadcast.
The tracker (``tracker.py``) follows submitted tips to the configured
confirmations; each change reaches both people as ``tip:updated``, and a
confirmed tip is announced in the conversation.

Prepared, expired and cancelled tips are the sender's alone: the recipient
hears of a tip once it has been sent to the network.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tortoise.exceptions import IntegrityError

from config.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    UnavailableError,
)
from config.settings import EthSettings
from realtime.events import TIP_UPDATED, Emitter
from server.chats.access import parse_id
from server.chats.messages import MessageService
from server.metrics import TipMetrics
from server.tips.rpc import EthRpc, EthRpcError
from server.tips.schemas import (
    PreparedTip,
    TipCost,
    TipOut,
    TipPage,
    TipsConfig,
    UnsignedTransaction,
)
from server.tips.transactions import (
    WEI_PER_ETH,
    Expected,
    check_signed,
    checksum,
    choose_fees,
    decode_signed,
    format_eth,
    gas_limit_for,
    mismatches,
    normalize_address,
    normalize_tx_hash,
    parse_amount,
    unsigned_transaction,
)
from server.users.service import UserNotFoundError, UserService
from storage.kv import KeyValueStore
from storage.models import Block, Conversation, Identity, Member, Tip

log = logging.getLogger(__name__)

# How long the node's chain id is trusted before it is asked again.
CHAIN_ID_TTL = 60.0
# Node messages that mean "I have this transaction already" (geth, nethermind, ganache).
_ALREADY_KNOWN = ("already known", "known transaction", "already imported", "already exists")


class TipsNotConfiguredError(UnavailableError):
    code = "tips_not_configured"


class WrongChainError(UnavailableError):
    code = "eth_wrong_chain"


class TipNotFoundError(NotFoundError):
    code = "tip_not_found"


class NoWalletError(InvalidRequestError):
    code = "no_wallet"


class InsufficientFundsError(InvalidRequestError):
    code = "insufficient_funds"


class TxRejectedError(InvalidRequestError):
    code = "tx_rejected"


class TipService:
    def __init__(
        self,
        settings: EthSettings,
        rpc: EthRpc | None,
        users: UserService,
        kv: KeyValueStore,
        emitter: Emitter,
        messages: MessageService,
        metrics: TipMetrics,
    ) -> None:
        self._settings = settings
        self._rpc = rpc
        self._users = users
        self._kv = kv
        self._emitter = emitter
        self._messages = messages
        self.metrics = metrics
        self._max_wei = int(Decimal(settings.max_tip_eth) * WEI_PER_ETH)
        self._chain_id: int | None = None
        self._chain_checked = 0.0
        # Told when a tip was sent to the network (the tracker looks at once).
        self.on_submitted: Callable[[], None] = lambda: None

    @property
    def enabled(self) -> bool:
        return self._rpc is not None

    @property
    def rpc(self) -> EthRpc:
        if self._rpc is None:
            raise TipsNotConfiguredError(
                "tips are not configured on this server (no PARLEY_ETH_RPC_URL)"
            )
        return self._rpc

    @property
    def confirmations_required(self) -> int:
        return self._settings.confirmations

    def config(self) -> TipsConfig:
        return TipsConfig(
            enabled=self.enabled,
            chain_id=self._settings.chain_id or self._chain_id,
            confirmations=self._settings.confirmations,
            max_tip_eth=format_eth(self._max_wei),
        )

    async def close(self) -> None:
        if self._rpc is not None:
            await self._rpc.close()

    async def chain_id(self) -> int:
        """The node's chain id, which must be the configured one."""
        rpc = self.rpc
        now = time.monotonic()
        if self._chain_id is None or now - self._chain_checked > CHAIN_ID_TTL:
            node_chain = await rpc.chain_id()
            wanted = self._settings.chain_id
            if wanted is not None and node_chain != wanted:
                raise WrongChainError(
                    f"the Ethereum node is on chain {node_chain}, tips are configured for "
                    f"chain {wanted} (PARLEY_ETH_CHAIN_ID)"
                )
            self._chain_id, self._chain_checked = node_chain, now
        return self._chain_id

    # -- prepare --------------------------------------------------------------------

    async def prepare(
        self,
        user_id: str,
        to_user_id: str,
        amount_eth: str,
        conversation_id: str | None,
        from_address: str | None,
    ) -> PreparedTip:
        rpc = self.rpc
        value = parse_amount(amount_eth, max_wei=self._max_wei)
        if to_user_id == user_id:
            raise InvalidRequestError("to_user_id: you cannot tip yourself", code="tip_to_self")
        if not await self._users.exists(to_user_id):
            raise UserNotFoundError("to_user_id: no such user")
        if await Block.exists(blocker_id=to_user_id, blocked_id=user_id):
            raise PermissionDeniedError("this person does not take tips from you", code="blocked")
        if await Block.exists(blocker_id=user_id, blocked_id=to_user_id):
            raise PermissionDeniedError(
                "you blocked this person; unblock them first", code="blocked"
            )
        conversation_id = await self._conversation_for(user_id, to_user_id, conversation_id)
        sender = await self._sender_address(user_id, from_address)
        recipient = await self._recipient_address(to_user_id)
        await self._check_limits(user_id)

        chain_id = await self.chain_id()
        nonce = await rpc.transaction_count(sender, "pending")
        try:
            estimate = await rpc.estimate_gas(sender, recipient, value)
        except EthRpcError as exc:
            raise InvalidRequestError(
                f"the node cannot estimate this transfer: {exc.rpc_message}",
                code="gas_estimate_failed",
            ) from None
        gas_limit = gas_limit_for(estimate)
        fees = choose_fees(await rpc.next_base_fee(), await rpc.max_priority_fee())
        balance = await rpc.balance(sender, "latest")
        gas_cost = gas_limit * fees.max_fee_per_gas
        if balance < value + gas_cost:
            raise InsufficientFundsError(
                f"insufficient funds: {checksum(sender)} holds {format_eth(balance)} ETH; the tip "
                f"needs {format_eth(value)} ETH plus up to {format_eth(gas_cost)} ETH for gas "
                f"({gas_limit} gas at up to {fees.max_fee_per_gas} wei), "
                f"{format_eth(value + gas_cost)} ETH in all"
            )
        now = datetime.now(UTC)
        tip = await Tip.create(
            sender_id=user_id,
            recipient_id=to_user_id,
            conversation_id=conversation_id,
            chain_id=chain_id,
            from_address=sender,
            to_address=recipient,
            amount_eth=format_eth(value),
            value_wei=str(value),
            nonce=nonce,
            gas_limit=gas_limit,
            max_fee_per_gas=str(fees.max_fee_per_gas),
            max_priority_fee_per_gas=str(fees.max_priority_fee_per_gas),
            expires_at=now + timedelta(seconds=self._settings.prepare_ttl),
        )
        self.metrics.transitions.labels("prepared").inc()
        out = self.out(tip)
        await self._emitter.emit_to_users(TIP_UPDATED, out.model_dump(mode="json"), [user_id])
        transaction = unsigned_transaction(
            chain_id=chain_id,
            from_address=sender,
            to_address=recipient,
            value_wei=value,
            nonce=nonce,
            gas_limit=gas_limit,
            fees=fees,
        )
        return PreparedTip(
            tip=out,
            transaction=UnsignedTransaction.model_validate(transaction),
            cost=TipCost(
                value_wei=str(value),
                max_gas_cost_wei=str(gas_cost),
                max_total_wei=str(value + gas_cost),
                max_total_eth=format_eth(value + gas_cost),
                balance_wei=str(balance),
            ),
        )

    async def _conversation_for(
        self, user_id: str, to_user_id: str, conversation_id: str | None
    ) -> str | None:
        if conversation_id is not None:
            members = {
                str(m)
                for m in await Member.filter(
                    conversation_id=conversation_id, user_id__in=[user_id, to_user_id]
                ).values_list("user_id", flat=True)
            }
            if user_id not in members:
                raise NotFoundError(
                    "conversation_id: no such conversation", code="conversation_not_found"
                )
            if to_user_id not in members:
                raise InvalidRequestError(
                    "conversation_id: the recipient is not in this conversation",
                    code="recipient_not_member",
                )
            return conversation_id
        pair = ":".join(sorted((user_id, to_user_id)))
        for mode in ("encrypted", "plaintext"):
            found = await Conversation.filter(direct_key=f"{mode}:{pair}").values_list(
                "id", flat=True
            )
            if found:
                return str(found[0])
        return None

    async def _addresses(self, user_id: str) -> list[str]:
        rows = (
            await Identity.filter(user_id=user_id, kind="ethereum", verified_at__isnull=False)
            .order_by("created_at")
            .values_list("value", flat=True)
        )
        return [str(r) for r in rows]

    async def _sender_address(self, user_id: str, chosen: str | None) -> str:
        addresses = await self._addresses(user_id)
        if not addresses:
            raise NoWalletError(
                "link an Ethereum wallet to your account first (POST /v1/me/identities/wallet)"
            )
        if chosen is not None:
            address = normalize_address(chosen, field="from_address")
            if address not in addresses:
                raise InvalidRequestError(
                    "from_address: not one of your linked Ethereum addresses",
                    code="not_your_address",
                )
            return address
        if len(addresses) > 1:
            raise InvalidRequestError(
                "from_address: you linked several Ethereum addresses; say which one pays",
                code="choose_address",
            )
        return addresses[0]

    async def _recipient_address(self, user_id: str) -> str:
        addresses = await self._addresses(user_id)
        if not addresses:
            raise NoWalletError(
                "the recipient has not linked an Ethereum wallet", code="recipient_no_wallet"
            )
        return addresses[0]  # the first they linked

    async def _check_limits(self, user_id: str) -> None:
        try:
            count = await self._kv.incr(f"rl:tips:{user_id}", ttl=3600)
        except UnavailableError:
            count = 0  # the open-tips cap below still holds
        if count > self._settings.prepares_per_hour:
            ttl = await self._kv.ttl(f"rl:tips:{user_id}")
            raise RateLimitedError(
                f"at most {self._settings.prepares_per_hour} tips may be prepared per hour",
                retry_after=max(1, int(ttl or 60)),
            )
        open_tips = await Tip.filter(
            sender_id=user_id, state="prepared", expires_at__gt=datetime.now(UTC)
        ).count()
        if open_tips >= self._settings.max_open_per_user:
            raise ConflictError(
                f"you have {open_tips} prepared tips waiting to be signed; submit or cancel "
                "one first",
                code="too_many_open_tips",
            )

    # -- submit ---------------------------------------------------------------------

    async def submit(
        self, user_id: str, tip_id: str, raw_transaction: str | None, tx_hash: str | None
    ) -> TipOut:
        rpc = self.rpc
        tip = await self._visible(user_id, tip_id)
        if str(tip.sender_id) != user_id:
            raise PermissionDeniedError("only the sender submits a tip", code="not_your_tip")
        signed = decode_signed(raw_transaction) if raw_transaction is not None else None
        wanted_hash = signed.hash if signed is not None else normalize_tx_hash(tx_hash or "")
        if tip.state != "prepared":
            if tip.tx_hash == wanted_hash:
                return self.out(tip)  # the same submission again
            raise ConflictError(
                f"this tip is {tip.state}, not waiting for a signature", code="tip_not_prepared"
            )
        if tip.expires_at <= datetime.now(UTC):
            await self.move(tip, "expired", reason="not submitted in time")
            raise ConflictError(
                "this tip expired before it was submitted; prepare it again", code="tip_expired"
            )
        expected = self.expected(tip)
        if signed is not None:
            check_signed(expected, signed)
            changes: dict[str, Any] = {
                "nonce": signed.nonce,
                "gas_limit": signed.gas,
                "max_fee_per_gas": str(signed.max_fee_per_gas),
                "max_priority_fee_per_gas": str(signed.max_priority_fee_per_gas),
                "verified": True,
            }
        else:
            changes = await self._check_broadcast(expected, wanted_hash)
        # Recorded before broadcasting: if this process dies in between, the
        # tracker finds a submitted tip and learns its fate from the chain.
        try:
            claimed = await Tip.filter(id=tip.id, state="prepared").update(
                state="submitted",
                tx_hash=wanted_hash,
                submitted_at=datetime.now(UTC),
                **changes,
            )
        except IntegrityError:
            raise ConflictError(
                "this transaction is already recorded for another tip", code="tx_already_used"
            ) from None
        if not claimed:
            tip = await Tip.get(id=tip.id)
            if tip.tx_hash == wanted_hash:
                return self.out(tip)
            raise ConflictError(
                f"this tip is {tip.state}, not waiting for a signature", code="tip_not_prepared"
            )
        if signed is not None:
            try:
                await self._broadcast(rpc, signed.raw)
            except Exception:
                await Tip.filter(id=tip.id, state="submitted").update(
                    state="prepared", tx_hash=None, submitted_at=None, verified=False
                )
                raise
        tip = await Tip.get(id=tip.id)
        self.metrics.transitions.labels("submitted").inc()
        await self.notify(tip)
        self.on_submitted()
        return self.out(tip)

    async def _broadcast(self, rpc: EthRpc, raw: str) -> None:
        try:
            await rpc.send_raw_transaction(raw)
        except EthRpcError as exc:
            if any(phrase in exc.rpc_message.lower() for phrase in _ALREADY_KNOWN):
                return
            raise TxRejectedError(
                f"the network refused the transaction: {exc.rpc_message}"
            ) from None

    async def _check_broadcast(self, expected: Expected, tx_hash: str) -> dict[str, Any]:
        """A hash from the wallet: compare with the prepared tip if the node knows it yet."""
        found = await self.rpc.transaction(tx_hash)
        if found is None:
            return {"verified": False}  # the tracker checks once the node sees it
        problems = mismatches(
            expected,
            chain_id=found.chain_id,
            sender=found.sender,
            to=found.to,
            value=found.value,
            data=found.data,
        )
        if problems:
            raise InvalidRequestError(
                "that transaction is not the prepared tip: " + "; ".join(problems),
                code="tx_mismatch",
            )
        return {"verified": True, "nonce": found.nonce}

    # -- reading --------------------------------------------------------------------

    async def get(self, user_id: str, tip_id: str) -> TipOut:
        return self.out(await self._visible(user_id, tip_id))

    async def cancel(self, user_id: str, tip_id: str) -> TipOut:
        tip = await self._visible(user_id, tip_id)
        if str(tip.sender_id) != user_id:
            raise PermissionDeniedError("only the sender cancels a tip", code="not_your_tip")
        if tip.state != "prepared":
            raise ConflictError(
                f"this tip is {tip.state}; only a prepared tip can be cancelled "
                "(a transaction sent to the network cannot be called back)",
                code="tip_not_prepared",
            )
        await self.move(tip, "cancelled", reason="cancelled by the sender")
        return self.out(await Tip.get(id=tip.id))

    async def listing(
        self, user_id: str, box: str, state: str | None, before: str | None, limit: int
    ) -> TipPage:
        query = Tip.filter(**{"sender_id" if box == "sent" else "recipient_id": user_id})
        if box == "received":
            query = query.exclude(state__in=["prepared", "expired", "cancelled"])
        if state is not None:
            query = query.filter(state=state)
        if before is not None:
            cursor = await Tip.get_or_none(id=str(parse_id(before, "before")))
            if cursor is None:
                raise InvalidRequestError("before: no such tip")
            query = query.filter(created_at__lt=cursor.created_at)
        tips = await query.order_by("-created_at", "-id").limit(limit + 1)
        more = len(tips) > limit
        tips = tips[:limit]
        return TipPage(
            tips=[self.out(t) for t in tips], next_before=str(tips[-1].id) if more else None
        )

    async def _visible(self, user_id: str, tip_id: str) -> Tip:
        tip = await Tip.get_or_none(id=str(parse_id(tip_id, "tip_id")))
        if tip is None:
            raise TipNotFoundError("no such tip")
        if str(tip.sender_id) == user_id:
            return tip
        if str(tip.recipient_id) == user_id and tip.state not in (
            "prepared",
            "expired",
            "cancelled",
        ):
            return tip
        raise TipNotFoundError("no such tip")

    # -- state changes (shared with the tracker) -------------------------------------

    def expected(self, tip: Tip) -> Expected:
        return Expected(
            chain_id=tip.chain_id,
            from_address=tip.from_address,
            to_address=tip.to_address,
            value_wei=int(tip.value_wei),
        )

    async def move(self, tip: Tip, state: str, *, reason: str = "", **changes: Any) -> bool:
        """Move ``tip`` on from the state it was read in; False if another writer did first."""
        moved = await Tip.filter(id=tip.id, state=tip.state).update(
            state=state, reason=reason[:200], **changes
        )
        if not moved:
            return False
        self.metrics.transitions.labels(state).inc()
        fresh = await Tip.get(id=tip.id)
        await self.notify(fresh)
        if state == "confirmed":
            await self.announce(fresh)
        return True

    async def notify(self, tip: Tip) -> None:
        private = tip.state in ("prepared", "expired", "cancelled")
        users = [str(tip.sender_id)] if private else [str(tip.sender_id), str(tip.recipient_id)]
        try:
            await self._emitter.emit_to_users(
                TIP_UPDATED, self.out(tip).model_dump(mode="json"), users
            )
        except Exception:
            # The state is stored; clients read it with GET /v1/tips/{id}.
            log.exception("tip:updated for %s not sent", tip.id)

    async def announce(self, tip: Tip) -> None:
        """The confirmed tip as a system message in its conversation (once: keyed by tip id)."""
        if tip.conversation_id is None:
            return
        await self._messages.append(
            str(tip.conversation_id),
            sender_id=None,
            client_msg_id=f"tip:{tip.id}",
            kind="system",
            body={
                "event": "tip",
                "by": str(tip.sender_id),
                "tip_id": str(tip.id),
                "to_user_id": str(tip.recipient_id),
                "amount_eth": tip.amount_eth,
                "value_wei": tip.value_wei,
                "chain_id": tip.chain_id,
                "tx_hash": tip.tx_hash,
            },
        )

    def out(self, tip: Tip) -> TipOut:
        return TipOut(
            id=str(tip.id),
            state=tip.state,  # type: ignore[arg-type]
            sender_id=str(tip.sender_id),
            recipient_id=str(tip.recipient_id),
            conversation_id=str(tip.conversation_id) if tip.conversation_id else None,
            chain_id=tip.chain_id,
            from_address=checksum(tip.from_address),
            to_address=checksum(tip.to_address),
            amount_eth=tip.amount_eth,
            value_wei=tip.value_wei,
            nonce=tip.nonce,
            gas_limit=tip.gas_limit,
            max_fee_per_gas=tip.max_fee_per_gas,
            max_priority_fee_per_gas=tip.max_priority_fee_per_gas,
            tx_hash=tip.tx_hash,
            block_number=tip.block_number,
            confirmations=tip.confirmations,
            confirmations_required=self._settings.confirmations,
            reason=tip.reason,
            created_at=tip.created_at,
            submitted_at=tip.submitted_at,
            expires_at=tip.expires_at,
        )
