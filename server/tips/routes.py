"""HTTP door of tips: prepare, submit, read, cancel."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query

from server.deps import PrincipalDep, ServicesDep
from server.tips.schemas import (
    PreparedTip,
    PrepareTipRequest,
    SubmitTipRequest,
    TipOut,
    TipPage,
    TipsConfig,
    TipState,
)

router = APIRouter(prefix="/v1", tags=["tips"])


@router.get("/tips/config", response_model=TipsConfig)
async def tips_config(principal: PrincipalDep, services: ServicesDep) -> TipsConfig:
    """Whether tips work here, on which chain, and with how many confirmations."""
    return services.tips.config()


@router.post("/tips/prepare", response_model=PreparedTip, status_code=201)
async def prepare(
    body: PrepareTipRequest, principal: PrincipalDep, services: ServicesDep
) -> PreparedTip:
    """Prepare an ETH transfer to another user's linked wallet.

    Returns the unsigned EIP-1559 transaction for your wallet to sign (hex
    fields, as `eth_sendTransaction` takes them) and what it may cost at most.
    """
    return await services.tips.prepare(
        principal.user_id,
        str(body.to_user_id),
        body.amount_eth,
        str(body.conversation_id) if body.conversation_id else None,
        body.from_address,
    )


@router.post("/tips/{tip_id}/submit", response_model=TipOut)
async def submit(
    tip_id: UUID, body: SubmitTipRequest, principal: PrincipalDep, services: ServicesDep
) -> TipOut:
    """Hand back the signed transaction (Parley checks and broadcasts it), or its hash.

    Both of you then get `tip:updated` at each step until it is confirmed.
    """
    return await services.tips.submit(
        principal.user_id, str(tip_id), body.raw_transaction, body.tx_hash
    )


@router.get("/tips", response_model=TipPage)
async def list_tips(
    principal: PrincipalDep,
    services: ServicesDep,
    box: Literal["sent", "received"] = "sent",
    state: TipState | None = None,
    before: Annotated[str | None, Query(max_length=36)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> TipPage:
    """Tips you sent or received, newest first."""
    return await services.tips.listing(principal.user_id, box, state, before, limit)


@router.get("/tips/{tip_id}", response_model=TipOut)
async def get_tip(tip_id: UUID, principal: PrincipalDep, services: ServicesDep) -> TipOut:
    return await services.tips.get(principal.user_id, str(tip_id))


@router.post("/tips/{tip_id}/cancel", response_model=TipOut)
async def cancel(tip_id: UUID, principal: PrincipalDep, services: ServicesDep) -> TipOut:
    """Withdraw a prepared tip that was never signed."""
    return await services.tips.cancel(principal.user_id, str(tip_id))
