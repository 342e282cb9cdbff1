"""Tips against a real local chain (ganache): prepare, sign, submit, mine, confirm, announce.

Two nodes share PostgreSQL and Redis; the sender is on one, the recipient on
the other, and the tracker runs on whichever holds the lease. Wallets are
eth-account keys that ganache funds; signatures and balances are real.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from client import ParleyClient
from client.account import ethereum_signer
from client.sdk import ParleyApiError
from client.tips import sign_prepared, transaction_for_signing
from tests.e2e.conftest import BASE_ENV, embedded_env
from tests.support.clients import signed_in_client
from tests.support.ganache import CHAIN_ID, ETH, Ganache
from tests.support.server import ServerProcess
from tests.support.services import (
    REDIS_E2E_DB,
    create_postgres_database,
    drop_postgres_database,
    redis_url,
)

# Someone outside Parley: their address appears in the transactions a wallet could sign.
MALLORY = Account.create()

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture(scope="module")
def chain() -> Iterator[Ganache]:
    ganache = Ganache().start()
    yield ganache
    ganache.stop()


def _eth_env(chain: Ganache, **extra: str) -> dict[str, str]:
    return {
        "PARLEY_ETH_RPC_URL": chain.url,
        "PARLEY_ETH_CHAIN_ID": str(CHAIN_ID),
        "PARLEY_ETH_CONFIRMATIONS": "2",
        "PARLEY_ETH_POLL_SECONDS": "0.2",
        "PARLEY_ETH_RPC_TIMEOUT": "3",
        **extra,
    }


@pytest.fixture(scope="module")
async def tip_env(
    chain: Ganache, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, str]]:
    database = await create_postgres_database("parley_tips")
    run = uuid.uuid4().hex[:8]
    yield {
        **BASE_ENV,
        **_eth_env(chain, PARLEY_ETH_DROP_AFTER="60"),
        "PARLEY_DATABASE_URL": database,
        "PARLEY_DATABASE_AUTO_MIGRATE": "true",
        "PARLEY_REDIS_URL": redis_url(REDIS_E2E_DB),
        "PARLEY_REDIS_CHANNEL": f"parley-tips-{run}",
        "PARLEY_REDIS_KEY_PREFIX": f"parley-tips-{run}:",
        "PARLEY_AUTH_KEYS_DIR": str(tmp_path_factory.mktemp("tip-keys")),
        "PARLEY_MEDIA_DIR": str(tmp_path_factory.mktemp("tip-media")),
    }
    await drop_postgres_database(database)


@pytest.fixture(scope="module")
def nodes(tip_env: dict[str, str]) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    first = ServerProcess(tip_env, name="tips-1").start()
    second = ServerProcess(tip_env, name="tips-2").start()
    yield first, second
    first.stop()
    second.stop()


async def wallet_user(
    node: ServerProcess, name: str, chain: Ganache, eth: int = 10 * ETH
) -> tuple[ParleyClient, LocalAccount]:
    """Signed in by phone, with a new wallet holding ``eth`` wei linked (proved by a real
    signature), connected."""
    wallet: LocalAccount = Account.create()
    if eth:
        chain.fund(wallet.address, eth)
    client = await signed_in_client(node, name)
    await client.link_wallet("ethereum", wallet.address, ethereum_signer(wallet))
    return client, wallet


async def error_of(call: Any) -> tuple[int, str, str]:
    with pytest.raises(ParleyApiError) as caught:
        await call
    return caught.value.status, caught.value.code, caught.value.message


async def next_tip_event(client: ParleyClient, tip_id: str, state: str) -> dict[str, Any]:
    """The tip:updated event that puts ``tip_id`` in ``state`` (earlier ones are passed over)."""
    async with asyncio.timeout(20):
        while True:
            data = await client.next_event("tip:updated", timeout=20)
            if data["id"] == tip_id and data["state"] == state:
                return dict(data)


async def test_tip_is_prepared_signed_broadcast_mined_confirmed_and_announced(
    nodes: tuple[ServerProcess, ServerProcess], chain: Ganache
) -> None:
    node1, node2 = nodes
    alice, alice_wallet = await wallet_user(node1, "alice", chain)
    bob, bob_wallet = await wallet_user(node2, "bob", chain)
    try:
        conversation = await alice.open_direct(bob.user_id or "", mode="encrypted")
        bob_before = chain.balance(bob_wallet.address)
        config = await alice.tips_config()
        assert config == {
            "enabled": True,
            "chain_id": CHAIN_ID,
            "confirmations": 2,
            "max_tip_eth": "10",
        }

        prepared = await alice.prepare_tip(
            bob.user_id or "", "0.25", conversation_id=conversation["id"]
        )
        tip, tx, cost = prepared["tip"], prepared["transaction"], prepared["cost"]
        assert tip["state"] == "prepared" and tip["amount_eth"] == "0.25"
        assert tip["value_wei"] == str(25 * 10**16)
        assert (
            tip["from_address"] == alice_wallet.address and tip["to_address"] == bob_wallet.address
        )
        assert tx["type"] == "0x2" and int(tx["chainId"], 16) == CHAIN_ID
        assert tx["from"] == alice_wallet.address and tx["to"] == bob_wallet.address
        assert int(tx["value"], 16) == 25 * 10**16 and tx["data"] == "0x"
        assert int(tx["gas"], 16) == 21000
        assert int(tx["nonce"], 16) == int(
            chain.rpc("eth_getTransactionCount", alice_wallet.address, "pending"), 16
        )
        assert int(tx["maxFeePerGas"], 16) >= int(tx["maxPriorityFeePerGas"], 16) > 0
        assert int(cost["max_total_wei"]) == 25 * 10**16 + 21000 * int(tx["maxFeePerGas"], 16)
        # The recipient hears nothing of a tip that was only prepared.
        assert (await bob.tips(box="received"))["tips"] == []
        status, code, _ = await error_of(bob.tip(tip["id"]))
        assert (status, code) == (404, "tip_not_found")

        raw = sign_prepared(prepared, alice_wallet)
        submitted = await alice.submit_tip(tip["id"], raw_transaction=raw)
        assert submitted["state"] == "submitted" and submitted["tx_hash"].startswith("0x")
        # Submitting the same transaction again changes nothing.
        again = await alice.submit_tip(tip["id"], raw_transaction=raw)
        assert again["tx_hash"] == submitted["tx_hash"]

        # Ganache mines it at once: one confirmation of two.
        mined = await next_tip_event(bob, tip["id"], "mined")
        assert mined["confirmations"] == 1 and mined["block_number"] >= 1
        chain.mine()
        for client in (alice, bob):
            confirmed = await next_tip_event(client, tip["id"], "confirmed")
            assert confirmed["confirmations"] >= 2
            assert confirmed["tx_hash"] == submitted["tx_hash"]
        assert chain.balance(bob_wallet.address) - bob_before == 25 * 10**16
        receipt = chain.rpc("eth_getTransactionReceipt", submitted["tx_hash"])
        assert receipt["status"] == "0x1" and receipt["to"].lower() == bob_wallet.address.lower()

        # Both see the notice in the conversation, once.
        for client in (alice, bob):
            async with asyncio.timeout(10):
                while True:
                    message = await client.next_message(timeout=10)
                    if message["kind"] == "system" and message["body"].get("event") == "tip":
                        break
            assert message["body"] == {
                "event": "tip",
                "by": alice.user_id,
                "tip_id": tip["id"],
                "to_user_id": bob.user_id,
                "amount_eth": "0.25",
                "value_wei": str(25 * 10**16),
                "chain_id": CHAIN_ID,
                "tx_hash": submitted["tx_hash"],
            }
        history = await bob.history(conversation["id"])
        notices = [m for m in history["messages"] if m["body"].get("event") == "tip"]
        assert len(notices) == 1

        chain.mine(2)  # more blocks do not announce it again
        await asyncio.sleep(1)
        history = await alice.history(conversation["id"])
        assert len([m for m in history["messages"] if m["body"].get("event") == "tip"]) == 1
        received = (await bob.tips(box="received"))["tips"]
        assert [t["id"] for t in received] == [tip["id"]] and received[0]["state"] == "confirmed"
        assert (await alice.tips(box="sent", state="confirmed"))["tips"][0]["id"] == tip["id"]
    finally:
        await alice.close()
        await bob.close()


async def test_submit_by_hash_when_the_wallet_broadcast_it(
    nodes: tuple[ServerProcess, ServerProcess], chain: Ganache
) -> None:
    node1, node2 = nodes
    alice, alice_wallet = await wallet_user(node2, "alice-h", chain)
    bob, _bob_wallet = await wallet_user(node1, "bob-h", chain)
    try:
        prepared = await alice.prepare_tip(bob.user_id or "", "0.001")
        # No conversation between them: the tip is still tracked, just not announced.
        assert prepared["tip"]["conversation_id"] is None
        signed = alice_wallet.sign_transaction(transaction_for_signing(prepared))
        tx_hash = chain.rpc("eth_sendRawTransaction", "0x" + bytes(signed.raw_transaction).hex())
        tip = await alice.submit_tip(prepared["tip"]["id"], tx_hash=tx_hash)
        assert tip["state"] in ("submitted", "mined") and tip["tx_hash"] == tx_hash.lower()
        chain.mine()
        done = await bob.wait_for_tip(tip["id"], timeout=20)
        assert done["state"] == "confirmed" and done["amount_eth"] == "0.001"
    finally:
        await alice.close()
        await bob.close()


BAD_AMOUNTS = [
    ("0", "more than 0"),
    ("0.000", "more than 0"),
    ("-1", "plain decimal"),
    ("1e3", "plain decimal"),
    ("0.0000000000000000001", "at most 18 decimals"),
    ("9" * 80, "at most 40 characters"),
    ("1" + "0" * 30, "at most 10 ETH"),
    ("10.000000000000000001", "at most 10 ETH"),
    (" 1", "plain decimal"),
    ("1.", "plain decimal"),
    (".5", "plain decimal"),
    ("0x10", "plain decimal"),
    ("NaN", "plain decimal"),
    ("1,5", "plain decimal"),
    ("01", "plain decimal"),
]


async def test_bad_amounts_are_refused_and_nothing_is_stored(
    nodes: tuple[ServerProcess, ServerProcess], chain: Ganache
) -> None:
    node1, _ = nodes
    alice, _alice_wallet = await wallet_user(node1, "alice-a", chain)
    bob, _bob_wallet = await wallet_user(node1, "bob-a", chain)
    try:
        for amount, problem in BAD_AMOUNTS:
            status, code, message = await error_of(alice.prepare_tip(bob.user_id or "", amount))
            if len(amount) > 40:
                assert (status, code) == (422, "invalid_request")  # stopped by the schema
            else:
                assert (status, code) == (422, "invalid_amount"), (amount, message)
                assert problem in message, (amount, message)
        assert (await alice.tips())["tips"] == []
    finally:
        await alice.close()
        await bob.close()


async def test_amounts_of_the_wrong_type_and_bad_bodies(
    nodes: tuple[ServerProcess, ServerProcess], chain: Ganache
) -> None:
    node1, _ = nodes
    alice, _alice_wallet = await wallet_user(node1, "alice-t", chain)
    bob, _bob_wallet = await wallet_user(node1, "bob-t", chain)
    headers = {"Authorization": f"Bearer {alice.access_token}"}
    try:
        async with httpx.AsyncClient(base_url=node1.url, headers=headers) as http:
            for body in (
                {"to_user_id": bob.user_id, "amount_eth": 1},
                {"to_user_id": bob.user_id, "amount_eth": 0.1},
                {"to_user_id": bob.user_id},
                {"to_user_id": "nobody", "amount_eth": "1"},
                {"to_user_id": bob.user_id, "amount_eth": "1", "memo": "x"},
                {"to_user_id": bob.user_id, "amount_eth": "1", "from_address": "0x12"},
            ):
                answer = await http.post("/v1/tips/prepare", json=body)
                assert answer.status_code == 422, (body, answer.text)
                assert answer.json()["error"]["code"] in ("invalid_request", "invalid_amount")
            prepared = (
                await http.post(
                    "/v1/tips/prepare", json={"to_user_id": bob.user_id, "amount_eth": "0.01"}
                )
            ).json()
            tip_id = prepared["tip"]["id"]
            for body in (
                {},
                {"raw_transaction": "0x02", "tx_hash": "0x" + "0" * 64},
                {"tx_hash": "0x1234"},
                {"raw_transaction": "0x" + "zz" * 60},
                {"raw_transaction": "0x" + "02" * 5000},
            ):
                answer = await http.post(f"/v1/tips/{tip_id}/submit", json=body)
                assert answer.status_code == 422, (body, answer.text)
            answer = await http.post(
                f"/v1/tips/{tip_id}/submit", json={"raw_transaction": "0x02c0ffee"}
            )
            assert answer.json()["error"]["code"] == "invalid_transaction"
            answer = await http.post(
                "/v1/tips/not-a-uuid/submit", json={"tx_hash": "0x" + "1" * 64}
            )
            assert answer.status_code == 422
            answer = await http.get(f"/v1/tips/{uuid.uuid4()}")
            assert (answer.status_code, answer.json()["error"]["code"]) == (404, "tip_not_found")
            assert (await http.get(f"/v1/tips/{tip_id}")).json()["state"] == "prepared"
            await http.post(f"/v1/tips/{tip_id}/cancel")
    finally:
        await alice.close()
        await bob.close()


async def test_insufficient_funds_names_the_numbers(
    nodes: tuple[ServerProcess, ServerProcess], chain: Ganache
) -> None:
    node1, _ = nodes
    poor, poor_wallet = await wallet_user(node1, "poor", chain, eth=ETH // 1000)
    bob, _bob_wallet = await wallet_user(node1, "bob-f", chain)
    try:
        status, code, message = await error_of(poor.prepare_tip(bob.user_id or "", "0.01"))
        assert (status, code) == (422, "insufficient_funds")
        assert poor_wallet.address in message and "holds 0.001 ETH" in message
        assert "needs 0.01 ETH plus up to" in message and "21000 gas" in message
        assert (await poor.tips())["tips"] == []
    finally:
        await poor.close()
        await bob.close()


async def test_a_signed_transaction_must_be_the_prepared_tip(
    nodes: tuple[ServerProcess, ServerProcess], chain: Ganache
) -> None:
    node1, _ = nodes
    alice, alice_wallet = await wallet_user(node1, "alice-m", chain)
    bob, bob_wallet = await wallet_user(node1, "bob-m", chain)
    try:
        prepared = await alice.prepare_tip(bob.user_id or "", "0.02")
        tip_id = prepared["tip"]["id"]
        base = transaction_for_signing(prepared)
        count_before = chain.rpc("eth_getTransactionCount", alice_wallet.address, "pending")
        cases = [
            ({**base, "value": base["value"] + 1}, alice_wallet, "sends 0.020000000000000001 ETH"),
            ({**base, "to": MALLORY.address}, alice_wallet, f"sends to {MALLORY.address}"),
            ({**base, "chainId": 1}, alice_wallet, "chain id is 1"),
            (base, MALLORY, f"signed by {MALLORY.address}"),
            ({**base, "data": "0x1234"}, alice_wallet, "call data"),
        ]
        for tx, signer, words in cases:
            raw = "0x" + bytes(signer.sign_transaction(tx).raw_transaction).hex()
            status, code, message = await error_of(alice.submit_tip(tip_id, raw_transaction=raw))
            assert (status, code) == (422, "tx_mismatch") and words in message, message
        legacy = alice_wallet.sign_transaction(
            {
                "chainId": CHAIN_ID,
                "nonce": base["nonce"],
                "to": bob_wallet.address,
                "value": base["value"],
                "gas": 21000,
                "gasPrice": base["maxFeePerGas"],
            }
        )
        status, code, message = await error_of(
            alice.submit_tip(tip_id, raw_transaction="0x" + bytes(legacy.raw_transaction).hex())
        )
        assert (status, code) == (422, "invalid_transaction") and "type 2" in message
        # Nothing was broadcast and the tip still waits for the right signature.
        assert chain.rpc("eth_getTransactionCount", alice_wallet.address, "pending") == count_before
        assert (await alice.tip(tip_id))["state"] == "prepared"
        done = await alice.submit_tip(tip_id, raw_transaction=sign_prepared(prepared, alice_wallet))
        assert done["state"] == "submitted"
        # The recipient cannot submit or cancel someone else's tip.
        status, code, _ = await error_of(bob.submit_tip(tip_id, tx_hash=done["tx_hash"]))
        assert (status, code) == (403, "not_your_tip")
        chain.mine()
        # A transaction the network refuses leaves the tip prepared: here the wallet
        # spent its balance elsewhere between prepare and submit.
        second = await alice.prepare_tip(bob.user_id or "", "0.02")
        tx = transaction_for_signing(second)
        fee = tx["gas"] * tx["maxFeePerGas"]
        drain = {**tx, "to": MALLORY.address, "value": chain.balance(alice_wallet.address) - fee}
        chain.rpc(
            "eth_sendRawTransaction",
            "0x" + bytes(alice_wallet.sign_transaction(drain).raw_transaction).hex(),
        )
        late = {**tx, "nonce": tx["nonce"] + 1}
        raw = "0x" + bytes(alice_wallet.sign_transaction(late).raw_transaction).hex()
        status, code, message = await error_of(
            alice.submit_tip(second["tip"]["id"], raw_transaction=raw)
        )
        assert (status, code) == (422, "tx_rejected") and "refused the transaction" in message
        again = await alice.tip(second["tip"]["id"])
        assert again["state"] == "prepared" and again["tx_hash"] is None
        await alice.cancel_tip(second["tip"]["id"])
    finally:
        await alice.close()
        await bob.close()


async def test_who_may_tip_whom(nodes: tuple[ServerProcess, ServerProcess], chain: Ganache) -> None:
    node1, node2 = nodes
    alice, alice_wallet = await wallet_user(node1, "alice-w", chain)
    bob, _bob_wallet = await wallet_user(node2, "bob-w", chain)
    carol = await signed_in_client(node1, "carol-w")  # no wallet
    dave, _dave_wallet = await wallet_user(node2, "dave-w", chain)
    try:
        cases = [
            (alice.prepare_tip(alice.user_id or "", "0.01"), 422, "tip_to_self"),
            (alice.prepare_tip(carol.user_id or "", "0.01"), 422, "recipient_no_wallet"),
            (carol.prepare_tip(alice.user_id or "", "0.01"), 422, "no_wallet"),
            (alice.prepare_tip(str(uuid.uuid4()), "0.01"), 404, "user_not_found"),
        ]
        for call, status, code in cases:
            assert (await error_of(call))[:2] == (status, code)
        # A conversation neither of us... and one the recipient is not in.
        group = await carol.create_group("carol's", [dave.user_id or ""], mode="plaintext")
        status, code, _ = await error_of(
            alice.prepare_tip(bob.user_id or "", "0.01", conversation_id=group["id"])
        )
        assert (status, code) == (404, "conversation_not_found")
        status, code, _ = await error_of(
            dave.prepare_tip(bob.user_id or "", "0.01", conversation_id=group["id"])
        )
        assert (status, code) == (422, "recipient_not_member")
        # Blocked, either way round.
        await bob.block(alice.user_id or "")
        assert (await error_of(alice.prepare_tip(bob.user_id or "", "0.01")))[:2] == (
            403,
            "blocked",
        )
        assert (await error_of(bob.prepare_tip(alice.user_id or "", "0.01")))[:2] == (
            403,
            "blocked",
        )
        await bob.unblock(alice.user_id or "")
        # Paying from an address you did not link.
        status, code, _ = await error_of(
            alice.prepare_tip(bob.user_id or "", "0.01", from_address=MALLORY.address)
        )
        assert (status, code) == (422, "not_your_address")
        # A third person cannot read a tip between two others.
        prepared = await alice.prepare_tip(bob.user_id or "", "0.01")
        assert (await error_of(dave.tip(prepared["tip"]["id"])))[:2] == (404, "tip_not_found")
        assert (await error_of(dave.cancel_tip(prepared["tip"]["id"])))[:2] == (
            404,
            "tip_not_found",
        )
        cancelled = await alice.cancel_tip(prepared["tip"]["id"])
        assert cancelled["state"] == "cancelled"
        status, code, _ = await error_of(
            alice.submit_tip(
                prepared["tip"]["id"], raw_transaction=sign_prepared(prepared, alice_wallet)
            )
        )
        assert (status, code) == (409, "tip_not_prepared")
    finally:
        for client in (alice, bob, carol, dave):
            await client.close()


async def test_a_pending_tip_is_resumed_after_every_node_restarts(
    nodes: tuple[ServerProcess, ServerProcess], chain: Ganache
) -> None:
    node1, node2 = nodes
    alice, alice_wallet = await wallet_user(node1, "alice-r", chain)
    bob, _bob_wallet = await wallet_user(node2, "bob-r", chain)
    try:
        prepared = await alice.prepare_tip(bob.user_id or "", "0.03")
        chain.stop_mining()
        try:
            tip = await alice.submit_tip(
                prepared["tip"]["id"], raw_transaction=sign_prepared(prepared, alice_wallet)
            )
            await asyncio.sleep(0.5)  # a tracker round: still in the pool
            assert (await alice.tip(tip["id"]))["state"] == "submitted"
            for node in (node1, node2):
                node.kill()
        finally:
            chain.start_mining()
        chain.mine(2)
        for node in (node1, node2):
            node.start()
        done = await bob.wait_for_tip(tip["id"], timeout=30)
        assert done["state"] == "confirmed" and done["confirmations"] >= 2
    finally:
        await alice.close()
        await bob.close()


async def test_a_hash_of_some_other_transfer_fails_the_tip(
    nodes: tuple[ServerProcess, ServerProcess], chain: Ganache
) -> None:
    node1, _ = nodes
    alice, alice_wallet = await wallet_user(node1, "alice-x", chain)
    bob, _bob_wallet = await wallet_user(node1, "bob-x", chain)
    try:
        prepared = await alice.prepare_tip(bob.user_id or "", "0.05")
        # A transfer to someone else, not yet on the network: its hash is all Parley gets.
        other = {**transaction_for_signing(prepared), "to": MALLORY.address}
        signed = alice_wallet.sign_transaction(other)
        tip = await alice.submit_tip(prepared["tip"]["id"], tx_hash="0x" + bytes(signed.hash).hex())
        assert tip["state"] == "submitted"
        chain.rpc("eth_sendRawTransaction", "0x" + bytes(signed.raw_transaction).hex())
        failed = await next_tip_event(alice, tip["id"], "failed")
        assert "not the prepared tip" in failed["reason"] and MALLORY.address in failed["reason"]
        # Once the node knows a mismatched transaction, its hash is refused at once.
        prepared = await alice.prepare_tip(bob.user_id or "", "0.05")
        status, code, _ = await error_of(
            alice.submit_tip(prepared["tip"]["id"], tx_hash="0x" + bytes(signed.hash).hex())
        )
        assert (status, code) in ((422, "tx_mismatch"), (409, "tx_already_used"))
        await alice.cancel_tip(prepared["tip"]["id"])
    finally:
        await alice.close()
        await bob.close()


# -- a node of its own: failures of the Ethereum node, expiry, drops by time ----------


@pytest.fixture(scope="module")
def lonely_chain() -> Iterator[Ganache]:
    ganache = Ganache().start()
    yield ganache
    ganache.stop()


def _sqlite_node(root: Path, name: str, **env: str) -> ServerProcess:
    return ServerProcess({**embedded_env(root), **env}, name=name).start()


async def test_the_ethereum_node_going_away_is_a_clear_error_and_changes_nothing(
    lonely_chain: Ganache, tmp_path: Path
) -> None:
    node = _sqlite_node(
        tmp_path,
        "tips-lonely",
        **_eth_env(lonely_chain, PARLEY_ETH_DROP_AFTER="2", PARLEY_ETH_PREPARE_TTL="3"),
    )
    alice, alice_wallet = await wallet_user(node, "alice-l", lonely_chain)
    bob, _bob_wallet = await wallet_user(node, "bob-l", lonely_chain)
    try:
        # A hash the network never sees is dropped after PARLEY_ETH_DROP_AFTER.
        prepared = await alice.prepare_tip(bob.user_id or "", "0.1")
        ghost = "0x" + "ab" * 32
        tip = await alice.submit_tip(prepared["tip"]["id"], tx_hash=ghost)
        dropped = await alice.wait_for_tip(tip["id"], timeout=20)
        assert dropped["state"] == "dropped" and "not mined within 2 seconds" in dropped["reason"]

        # A prepared tip not submitted in time expires.
        prepared = await alice.prepare_tip(bob.user_id or "", "0.1")
        expired = await alice.wait_for_tip(prepared["tip"]["id"], timeout=20)
        assert expired["state"] == "expired"
        status, code, _ = await error_of(
            alice.submit_tip(expired["id"], raw_transaction=sign_prepared(prepared, alice_wallet))
        )
        assert (status, code) == (409, "tip_not_prepared")

        # The node stops: prepare and submit say so; nothing changes.
        prepared = await alice.prepare_tip(bob.user_id or "", "0.1")
        lonely_chain.stop()
        status, code, message = await error_of(
            alice.submit_tip(
                prepared["tip"]["id"], raw_transaction=sign_prepared(prepared, alice_wallet)
            )
        )
        assert (status, code) == (503, "eth_node_unavailable"), message
        assert (await alice.tip(prepared["tip"]["id"]))["state"] == "prepared"
        status, code, _ = await error_of(alice.prepare_tip(bob.user_id or "", "0.1"))
        assert (status, code) == (503, "eth_node_unavailable")
        sent = (await alice.tips())["tips"]
        assert [t["state"] for t in sent] == ["prepared", "expired", "dropped"]
        # Chat goes on without the Ethereum node.
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{node.url}/readyz")).status_code == 200
    finally:
        await alice.close()
        await bob.close()
        node.stop()


async def test_wrong_chain_and_no_node_at_all(
    chain: Ganache, tmp_path: Path, sqlite_node: ServerProcess
) -> None:
    wrong = _sqlite_node(
        tmp_path / "wrong", "tips-wrong-chain", **_eth_env(chain, PARLEY_ETH_CHAIN_ID="1")
    )
    alice, _alice_wallet = await wallet_user(wrong, "alice-c", chain)
    bob, _bob_wallet = await wallet_user(wrong, "bob-c", chain)
    try:
        status, code, message = await error_of(alice.prepare_tip(bob.user_id or "", "0.01"))
        assert (status, code) == (503, "eth_wrong_chain")
        assert "chain 1337" in message and "chain 1 " in message
        assert (await alice.tips())["tips"] == []
    finally:
        await alice.close()
        await bob.close()
        wrong.stop()
    # The embedded default: no Ethereum node configured at all.
    carol, _carol_wallet = await wallet_user(sqlite_node, "carol-c", chain)
    dave, _dave_wallet = await wallet_user(sqlite_node, "dave-c", chain)
    try:
        assert (await carol.tips_config())["enabled"] is False
        status, code, message = await error_of(carol.prepare_tip(dave.user_id or "", "0.01"))
        assert (status, code) == (503, "tips_not_configured") and "PARLEY_ETH_RPC_URL" in message
    finally:
        await carol.close()
        await dave.close()


async def test_a_tip_whose_nonce_another_transaction_took_is_dropped(tmp_path: Path) -> None:
    """The transaction leaves the pool (the Ethereum node restarts) and the wallet reuses its
    nonce for something else: the tip is dropped, saying why."""
    chain = Ganache(db_path=tmp_path / "chain").start()
    node = _sqlite_node(tmp_path / "node", "tips-drop", **_eth_env(chain))
    alice, alice_wallet = await wallet_user(node, "alice-d", chain)
    bob, _bob_wallet = await wallet_user(node, "bob-d", chain)
    try:
        prepared = await alice.prepare_tip(bob.user_id or "", "0.04")
        tx = transaction_for_signing(prepared)
        chain.stop_mining()
        tip = await alice.submit_tip(
            prepared["tip"]["id"], raw_transaction=sign_prepared(prepared, alice_wallet)
        )
        chain.stop()  # the pool is lost with the process; the chain is on disk
        chain.start()
        other = {**tx, "to": MALLORY.address, "value": 1}
        chain.rpc(
            "eth_sendRawTransaction",
            "0x" + bytes(alice_wallet.sign_transaction(other).raw_transaction).hex(),
        )
        dropped = await bob.wait_for_tip(tip["id"], timeout=20)
        assert dropped["state"] == "dropped", dropped
        assert f"used nonce {tx['nonce']}" in dropped["reason"]
    finally:
        await alice.close()
        await bob.close()
        node.stop()
        chain.stop()


async def test_a_reverted_transfer_fails_the_tip(
    nodes: tuple[ServerProcess, ServerProcess], chain: Ganache
) -> None:
    """The recipient's address turns out to run code that reverts (ganache can put code at
    any address): the transaction is mined with status 0 and the tip fails, saying so."""
    node1, node2 = nodes
    alice, alice_wallet = await wallet_user(node1, "alice-v", chain)
    bob, bob_wallet = await wallet_user(node2, "bob-v", chain)
    try:
        prepared = await alice.prepare_tip(bob.user_id or "", "0.01")
        chain.rpc("evm_setAccountCode", bob_wallet.address, "0x60006000fd")  # REVERT(0, 0)
        tip = await alice.submit_tip(
            prepared["tip"]["id"], raw_transaction=sign_prepared(prepared, alice_wallet)
        )
        failed = await next_tip_event(bob, tip["id"], "failed")
        assert failed["reason"] == "the transaction reverted" and failed["block_number"]
        receipt = chain.rpc("eth_getTransactionReceipt", tip["tx_hash"])
        assert receipt["status"] == "0x0"
    finally:
        await alice.close()
        await bob.close()


async def test_a_wallet_on_the_tip_chain_signs_in_without_switching_networks(
    nodes: tuple[ServerProcess, ServerProcess], sqlite_node: ServerProcess
) -> None:
    """Sign-In with Ethereum accepts PARLEY_ETH_CHAIN_ID besides the configured chain ids."""
    node1, _ = nodes
    wallet = Account.create()
    client = ParleyClient(node1.url)
    other = ParleyClient(sqlite_node.url)
    try:
        await client.sign_in_with_ethereum(wallet, chain_id=CHAIN_ID)
        assert [i["kind"] for i in await client.identities()] == ["ethereum"]
        # A node without tips accepts only PARLEY_AUTH_ETHEREUM_CHAIN_IDS (1).
        status, code, _ = await error_of(other.sign_in_with_ethereum(wallet, chain_id=CHAIN_ID))
        assert (status, code) == (422, "unsupported_chain")
    finally:
        await client.close()
        await other.close()
