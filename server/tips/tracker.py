"""Follows submitted tips on the chain until they are confirmed, failed or dropped.

One node at a time tracks (a lease in the key-value store); because the
state lives in the database, a restarted or newly elected node simply
resumes where the last one stopped. Every change is a compare-and-set on the
state it was read in, so two trackers racing briefly cannot notify twice.

A round: expire prepared tips past their deadline; read the head block once;
for every submitted or mined tip read its receipt. A receipt with status 0
fails the tip; otherwise it is mined and counts confirmations (the block
holding it counts as one) until it has enough; a receipt that disappears
(a reorganisation) sends the tip back to submitted. A transaction that only
a hash vouched for is compared with the prepared tip as soon as the node
shows it. A submitted tip is dropped when its sender's nonce moved past it
without it, or when the node has not mined it for ``drop_after`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from config.errors import ParleyError
from config.settings import EthSettings
from server.tips.rpc import EthRpc
from server.tips.service import TipService
from server.tips.transactions import mismatches
from storage.kv import KeyValueStore
from storage.lease import Lease
from storage.models import Tip

log = logging.getLogger(__name__)

BATCH = 200


class TipTracker:
    def __init__(self, settings: EthSettings, tips: TipService, kv: KeyValueStore) -> None:
        self._settings = settings
        self._tips = tips
        self._lease = Lease(kv, "tips", ttl=max(10.0, settings.poll_seconds * 3))
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        if not self._tips.enabled:
            return
        try:
            while True:
                try:
                    if await self._lease.hold():
                        await self.step()
                    else:
                        self._tips.metrics.tracked.set(0)
                except asyncio.CancelledError:
                    raise
                except ParleyError as exc:
                    log.warning("tip tracker waiting: %s", exc.message)
                except Exception:
                    log.exception("tip tracker round failed; retrying")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.poll_seconds)
                self._wake.clear()
        finally:
            # A node shutting down hands the lease on at once, not after its TTL.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._lease.release())

    async def step(self) -> None:
        await self._expire()
        pending = (
            await Tip.filter(state__in=["submitted", "mined"]).order_by("submitted_at").limit(BATCH)
        )
        self._tips.metrics.tracked.set(len(pending))
        if not pending:
            return
        rpc = self._tips.rpc
        head = await rpc.block_number()
        for tip in pending:
            try:
                await self._follow(rpc, tip, head)
            except ParleyError as exc:
                # One odd answer must not hold up the other tips.
                log.warning("tip %s not checked this round: %s", tip.id, exc.message)

    async def _expire(self) -> None:
        now = datetime.now(UTC)
        for tip in await Tip.filter(state="prepared", expires_at__lte=now).limit(BATCH):
            await self._tips.move(tip, "expired", reason="not submitted in time")

    async def _follow(self, rpc: EthRpc, tip: Tip, head: int) -> None:
        assert tip.tx_hash is not None
        if not tip.verified and not await self._verify(rpc, tip):
            return
        receipt = await rpc.receipt(tip.tx_hash)
        if receipt is None:
            if tip.state == "mined":
                await self._tips.move(
                    tip, "submitted", reason="", block_number=None, confirmations=0
                )
                return
            await self._maybe_dropped(rpc, tip)
            return
        if not receipt.succeeded:
            await self._tips.move(
                tip,
                "failed",
                reason="the transaction reverted",
                block_number=receipt.block_number,
                confirmations=max(0, head - receipt.block_number + 1),
            )
            return
        confirmations = max(1, head - receipt.block_number + 1)
        state = "confirmed" if confirmations >= self._tips.confirmations_required else "mined"
        if (
            state != tip.state
            or confirmations != tip.confirmations
            or receipt.block_number != tip.block_number
        ):
            await self._tips.move(
                tip, state, block_number=receipt.block_number, confirmations=confirmations
            )

    async def _verify(self, rpc: EthRpc, tip: Tip) -> bool:
        """A tip known only by its hash: is it the prepared transfer? False if not (yet)."""
        assert tip.tx_hash is not None
        found = await rpc.transaction(tip.tx_hash)
        if found is None:
            await self._maybe_dropped(rpc, tip, nonce_known=False)
            return False
        problems = mismatches(
            self._tips.expected(tip),
            chain_id=found.chain_id,
            sender=found.sender,
            to=found.to,
            value=found.value,
            data=found.data,
        )
        if problems:
            await self._tips.move(
                tip, "failed", reason="not the prepared tip: " + "; ".join(problems)
            )
            return False
        await Tip.filter(id=tip.id, state=tip.state).update(verified=True, nonce=found.nonce)
        tip.verified, tip.nonce = True, found.nonce
        return True

    async def _maybe_dropped(self, rpc: EthRpc, tip: Tip, *, nonce_known: bool = True) -> None:
        assert tip.tx_hash is not None and tip.submitted_at is not None
        if nonce_known and await rpc.transaction_count(tip.from_address, "latest") > tip.nonce:
            # The nonce is used. Ask once more: it may have been mined just now.
            if await rpc.receipt(tip.tx_hash) is None:
                await self._tips.move(
                    tip,
                    "dropped",
                    reason=f"another transaction from {tip.from_address} used nonce {tip.nonce}",
                )
            return
        waited = datetime.now(UTC) - tip.submitted_at
        if waited > timedelta(seconds=self._settings.drop_after):
            await self._tips.move(
                tip,
                "dropped",
                reason=f"not mined within {self._settings.drop_after} seconds",
            )
