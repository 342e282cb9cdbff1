"""Tips in the SDK: prepare, sign with eth-account, submit, wait for confirmation."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from eth_account.signers.local import LocalAccount

TIP_UPDATED = "tip:updated"
FINAL_STATES = frozenset({"confirmed", "failed", "dropped", "expired", "cancelled"})


def transaction_for_signing(prepared: dict[str, Any]) -> dict[str, Any]:
    """The hex transaction of ``POST /v1/tips/prepare`` as eth-account signs it."""
    tx = prepared.get("transaction", prepared)
    return {
        "type": int(tx["type"], 16),
        "chainId": int(tx["chainId"], 16),
        "nonce": int(tx["nonce"], 16),
        "to": tx["to"],
        "value": int(tx["value"], 16),
        "gas": int(tx["gas"], 16),
        "maxFeePerGas": int(tx["maxFeePerGas"], 16),
        "maxPriorityFeePerGas": int(tx["maxPriorityFeePerGas"], 16),
        "data": tx["data"],
    }


def sign_prepared(prepared: dict[str, Any], account: LocalAccount) -> str:
    """Sign a prepared tip's transaction; the raw transaction as 0x hex."""
    signed = account.sign_transaction(transaction_for_signing(prepared))
    return "0x" + bytes(signed.raw_transaction).hex()


class TipMethods:
    """HTTP calls for tips; mixed into ParleyClient."""

    if TYPE_CHECKING:
        events: asyncio.Queue[tuple[str, Any]]

        async def request(
            self,
            method: str,
            path: str,
            *,
            json: Any = None,
            params: dict[str, Any] | None = None,
            auth: bool = True,
        ) -> Any: ...

    async def tips_config(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/v1/tips/config")
        return result

    async def prepare_tip(
        self,
        to_user_id: str,
        amount_eth: str,
        *,
        conversation_id: str | None = None,
        from_address: str | None = None,
    ) -> dict[str, Any]:
        """``{"tip", "transaction", "cost"}``: the unsigned transaction for the wallet."""
        body: dict[str, Any] = {"to_user_id": to_user_id, "amount_eth": amount_eth}
        if conversation_id is not None:
            body["conversation_id"] = conversation_id
        if from_address is not None:
            body["from_address"] = from_address
        result: dict[str, Any] = await self.request("POST", "/v1/tips/prepare", json=body)
        return result

    async def submit_tip(
        self, tip_id: str, *, raw_transaction: str | None = None, tx_hash: str | None = None
    ) -> dict[str, Any]:
        body = (
            {"raw_transaction": raw_transaction}
            if raw_transaction is not None
            else {"tx_hash": tx_hash}
        )
        result: dict[str, Any] = await self.request("POST", f"/v1/tips/{tip_id}/submit", json=body)
        return result

    async def send_tip(
        self,
        to_user_id: str,
        amount_eth: str,
        account: LocalAccount,
        *,
        conversation_id: str | None = None,
    ) -> dict[str, Any]:
        """Prepare, sign with ``account`` and submit; the tip as submitted."""
        prepared = await self.prepare_tip(
            to_user_id, amount_eth, conversation_id=conversation_id, from_address=account.address
        )
        raw = sign_prepared(prepared, account)
        return await self.submit_tip(prepared["tip"]["id"], raw_transaction=raw)

    async def tip(self, tip_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"/v1/tips/{tip_id}")
        return result

    async def tips(
        self,
        *,
        box: str = "sent",
        state: str | None = None,
        before: str | None = None,
        limit: int = 50,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"box": box, "limit": limit}
        if state is not None:
            params["state"] = state
        if before is not None:
            params["before"] = before
        result: dict[str, Any] = await self.request("GET", "/v1/tips", params=params)
        return result

    async def cancel_tip(self, tip_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", f"/v1/tips/{tip_id}/cancel")
        return result

    async def wait_for_tip(
        self, tip_id: str, states: frozenset[str] = FINAL_STATES, *, timeout: float = 60.0
    ) -> dict[str, Any]:
        """The tip once it reaches one of ``states``, from ``tip:updated`` events.

        Reads the tip over HTTP as well, every few seconds, so a missed event
        (a reconnect) costs only a little time. Other events are put back.
        """
        deadline = time.monotonic() + timeout
        current = await self.tip(tip_id)
        skipped: list[tuple[str, Any]] = []
        try:
            while current["state"] not in states:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"tip {tip_id} is still {current['state']}")
                try:
                    name, data = await asyncio.wait_for(self.events.get(), min(left, 3.0))
                except TimeoutError:
                    current = await self.tip(tip_id)
                    continue
                if name == TIP_UPDATED and isinstance(data, dict) and data.get("id") == tip_id:
                    current = data
                else:
                    skipped.append((name, data))
        finally:
            for item in skipped:
                self.events.put_nowait(item)
        return current
