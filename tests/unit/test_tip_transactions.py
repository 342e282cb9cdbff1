"""The arithmetic and checks of a tip: exact wei, fees, signed transactions compared."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from eth_account import Account

from server.tips.transactions import (
    WEI_PER_ETH,
    Expected,
    Fees,
    InvalidAmountError,
    InvalidTransactionError,
    TransactionMismatchError,
    check_signed,
    choose_fees,
    decode_signed,
    format_eth,
    gas_limit_for,
    normalize_tx_hash,
    parse_amount,
    unsigned_transaction,
)

MAX = 10 * WEI_PER_ETH
SENDER = Account.create()
RECIPIENT = Account.create()


@pytest.mark.parametrize(
    ("text", "wei"),
    [
        ("1", WEI_PER_ETH),
        ("0.5", WEI_PER_ETH // 2),
        ("0.000000000000000001", 1),
        ("1.000000000000000001", WEI_PER_ETH + 1),
        ("0.1", 10**17),
        ("10", MAX),
        ("3.14159", 3_141_590_000_000_000_000),
    ],
)
def test_amounts_become_exact_wei(text: str, wei: int) -> None:
    assert parse_amount(text, max_wei=MAX) == wei


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("0", "more than 0"),
        ("0.0", "more than 0"),
        ("-1", "plain decimal"),
        ("+1", "plain decimal"),
        ("1e3", "plain decimal"),
        ("1E-3", "plain decimal"),
        ("0.0000000000000000001", "at most 18 decimals"),
        ("9" * 80, "at most 40 characters"),
        ("10.000000000000000001", "at most 10 ETH"),
        ("", "plain decimal"),
        (" 1", "plain decimal"),
        ("1 ", "plain decimal"),
        ("1.", "plain decimal"),
        (".5", "plain decimal"),
        ("00.5", "plain decimal"),
        ("0x1", "plain decimal"),
        ("inf", "plain decimal"),
        ("NaN", "plain decimal"),
        ("1,0", "plain decimal"),
        ("\u0661", "plain decimal"),  # an Arabic-Indic one: a digit to Python, not to us
    ],
)
def test_bad_amounts_name_the_problem(text: str, words: str) -> None:
    with pytest.raises(InvalidAmountError) as caught:
        parse_amount(text, max_wei=MAX)
    assert words in caught.value.message
    assert caught.value.code == "invalid_amount"


def test_format_and_parse_are_inverse() -> None:
    rng = random.Random(1559)
    samples = [1, 9, 10, WEI_PER_ETH - 1, WEI_PER_ETH, MAX - 1, MAX]
    samples += [rng.randint(1, MAX) for _ in range(2000)]
    samples += [rng.randint(1, 10**k) for k in range(1, 19) for _ in range(20)]
    for wei in samples:
        text = format_eth(wei)
        assert parse_amount(text, max_wei=MAX) == wei, text
        assert Decimal(text) * WEI_PER_ETH == wei


def test_fees_leave_room_for_the_base_fee_to_double() -> None:
    assert choose_fees(10, 2) == Fees(max_fee_per_gas=22, max_priority_fee_per_gas=2)
    assert choose_fees(10, -5).max_priority_fee_per_gas == 0
    assert gas_limit_for(21_000) == 21_000
    assert gas_limit_for(50_000) == 60_000


def _prepared(value: int = WEI_PER_ETH // 10) -> dict[str, object]:
    tx = unsigned_transaction(
        chain_id=1337,
        from_address=SENDER.address.lower(),
        to_address=RECIPIENT.address.lower(),
        value_wei=value,
        nonce=7,
        gas_limit=21_000,
        fees=Fees(max_fee_per_gas=3 * 10**9, max_priority_fee_per_gas=10**9),
    )
    assert tx["from"] == SENDER.address and tx["to"] == RECIPIENT.address  # checksummed
    assert tx["value"] == hex(value) and tx["type"] == "0x2" and tx["gas"] == "0x5208"
    return {
        "type": 2,
        "chainId": int(tx["chainId"], 16),
        "nonce": int(tx["nonce"], 16),
        "to": tx["to"],
        "value": int(tx["value"], 16),
        "gas": int(tx["gas"], 16),
        "maxFeePerGas": int(tx["maxFeePerGas"], 16),
        "maxPriorityFeePerGas": int(tx["maxPriorityFeePerGas"], 16),
        "data": b"",
    }


EXPECTED = Expected(
    chain_id=1337,
    from_address=SENDER.address.lower(),
    to_address=RECIPIENT.address.lower(),
    value_wei=WEI_PER_ETH // 10,
)


def _raw(tx: dict[str, object], signer: object = SENDER) -> str:
    return "0x" + bytes(signer.sign_transaction(tx).raw_transaction).hex()  # type: ignore[attr-defined]


def test_a_signed_transfer_decodes_and_matches() -> None:
    tx = _prepared()
    signed_tx = SENDER.sign_transaction(tx)
    signed = decode_signed("0x" + bytes(signed_tx.raw_transaction).hex())
    assert signed.sender == SENDER.address.lower()
    assert signed.hash == "0x" + bytes(signed_tx.hash).hex()
    assert (signed.chain_id, signed.nonce, signed.value, signed.gas) == (
        1337,
        7,
        WEI_PER_ETH // 10,
        21_000,
    )
    check_signed(EXPECTED, signed)
    # Without the 0x prefix too; the wallet's nonce and fees are its own.
    check_signed(EXPECTED, decode_signed(_raw({**tx, "nonce": 9, "maxFeePerGas": 10**10})[2:]))


@pytest.mark.parametrize(
    ("change", "signer", "words"),
    [
        ({"value": WEI_PER_ETH}, SENDER, "sends 1 ETH, the tip is 0.1 ETH"),
        ({"to": SENDER.address}, SENDER, f"sends to {SENDER.address}"),
        ({"chainId": 1}, SENDER, "chain id is 1, the tip is on chain 1337"),
        ({}, RECIPIENT, f"signed by {RECIPIENT.address}"),
        ({"data": b"\x01"}, SENDER, "call data"),
    ],
)
def test_a_different_transaction_is_refused_naming_the_difference(
    change: dict[str, object], signer: object, words: str
) -> None:
    signed = decode_signed(_raw({**_prepared(), **change}, signer))
    with pytest.raises(TransactionMismatchError) as caught:
        check_signed(EXPECTED, signed)
    assert words in caught.value.message


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("", "whole bytes"),
        ("0x", "whole bytes"),
        ("0x0", "whole bytes"),
        ("0xzz", "whole bytes"),
        ("0x02", "well-formed"),
        ("0x02c0", "well-formed"),
        ("0x02" + "ff" * 100, "well-formed"),
        ("0x01" + "00" * 10, "type 2"),
        ("0x" + "00" * 3000, "at most 2048 bytes"),
    ],
)
def test_garbage_is_not_a_transaction(raw: str, words: str) -> None:
    with pytest.raises(InvalidTransactionError) as caught:
        decode_signed(raw)
    assert words in caught.value.message


def test_legacy_and_tampered_transactions_are_refused() -> None:
    legacy = SENDER.sign_transaction(
        {
            "chainId": 1337,
            "nonce": 0,
            "to": RECIPIENT.address,
            "value": 1,
            "gas": 21000,
            "gasPrice": 1,
        }
    )
    with pytest.raises(InvalidTransactionError, match="type 2"):
        decode_signed("0x" + bytes(legacy.raw_transaction).hex())
    raw = bytearray.fromhex(_raw(_prepared())[2:])
    raw[-1] ^= 0xFF  # flip bits of the signature's s
    try:
        signed = decode_signed("0x" + raw.hex())
    except InvalidTransactionError:
        return  # not a valid signature at all
    assert signed.sender != SENDER.address.lower()  # recovers to someone else


def test_transaction_hashes_are_checked() -> None:
    assert normalize_tx_hash("0x" + "AB" * 32) == "0x" + "ab" * 32
    for bad in ("0x" + "ab" * 31, "ab" * 32, "0x" + "zz" * 32):
        with pytest.raises(InvalidTransactionError):
            normalize_tx_hash(bad)
