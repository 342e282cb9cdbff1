"""Tip requests and answers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from server.tips.transactions import MAX_AMOUNT_CHARS, MAX_RAW_TX_BYTES

TipState = Literal[
    "prepared", "submitted", "mined", "confirmed", "failed", "dropped", "expired", "cancelled"
]
FINAL_STATES: frozenset[str] = frozenset({"confirmed", "failed", "dropped", "expired", "cancelled"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PrepareTipRequest(_Strict):
    to_user_id: UUID
    amount_eth: Annotated[str, StringConstraints(min_length=1, max_length=MAX_AMOUNT_CHARS)] = (
        Field(
            description='ETH as a plain decimal string ("0.05"); converted to wei exactly, '
            "at most 18 decimals",
            examples=["0.05"],
        )
    )
    conversation_id: UUID | None = Field(
        default=None,
        description="The chat the confirmed tip is announced in; both of you must be members. "
        "Without it, your direct conversation with the recipient (encrypted first), if any.",
    )
    from_address: Annotated[str, StringConstraints(max_length=42)] | None = Field(
        default=None,
        description="Which of your linked Ethereum addresses pays; needed only if you "
        "linked more than one",
    )


class SubmitTipRequest(_Strict):
    raw_transaction: (
        Annotated[str, StringConstraints(min_length=4, max_length=2 + 2 * MAX_RAW_TX_BYTES)] | None
    ) = Field(
        default=None,
        description="The signed transaction (0x hex); Parley checks it and broadcasts it",
    )
    tx_hash: Annotated[str, StringConstraints(min_length=66, max_length=66)] | None = Field(
        default=None, description="The hash, if the wallet broadcast the transaction itself"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> SubmitTipRequest:
        if (self.raw_transaction is None) == (self.tx_hash is None):
            raise ValueError("send exactly one of raw_transaction and tx_hash")
        return self


class TipOut(BaseModel):
    id: str
    state: TipState
    sender_id: str
    recipient_id: str
    conversation_id: str | None
    chain_id: int
    from_address: str = Field(description="EIP-55 checksummed")
    to_address: str = Field(description="EIP-55 checksummed")
    amount_eth: str
    value_wei: str = Field(description="Exact, as a decimal string")
    nonce: int
    gas_limit: int
    max_fee_per_gas: str
    max_priority_fee_per_gas: str
    tx_hash: str | None
    block_number: int | None
    confirmations: int
    confirmations_required: int
    reason: str = Field(description="Why a tip failed or was dropped")
    created_at: datetime
    submitted_at: datetime | None
    expires_at: datetime = Field(description="A prepared tip not submitted by then expires")


class UnsignedTransaction(BaseModel):
    """A type-2 transaction as wallets take it (MetaMask eth_sendTransaction params)."""

    type: str
    chainId: str
    from_: str = Field(alias="from", serialization_alias="from")
    to: str
    value: str
    nonce: str
    gas: str
    maxFeePerGas: str
    maxPriorityFeePerGas: str
    data: str

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class TipCost(BaseModel):
    value_wei: str
    max_gas_cost_wei: str = Field(description="gas limit x max fee per gas")
    max_total_wei: str
    max_total_eth: str
    balance_wei: str


class PreparedTip(BaseModel):
    tip: TipOut
    transaction: UnsignedTransaction
    cost: TipCost


class TipPage(BaseModel):
    tips: list[TipOut]
    next_before: str | None = Field(description="Pass as `before` for the next (older) page")


class TipsConfig(BaseModel):
    enabled: bool
    chain_id: int | None
    confirmations: int
    max_tip_eth: str
