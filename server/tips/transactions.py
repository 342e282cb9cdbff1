"""The arithmetic and checks of a tip, without I/O.

Amounts are decimal strings turned into integers of wei by string arithmetic
(never through floats); fees follow the rule wallets use for EIP-1559
(max fee = 2 x next base fee + priority fee, so the transaction stays
includable while the base fee doubles); a signed transaction is decoded with
eth-account and compared field by field with what was prepared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes

from config.errors import InvalidRequestError

WEI_PER_ETH = 10**18
ETH_DECIMALS = 18
# A plain transfer to an account without code costs exactly this much gas.
TRANSFER_GAS = 21_000
# Longest amount accepted: 20 whole digits, the point and 18 decimals.
MAX_AMOUNT_CHARS = 40
# A signed type-2 transfer is about 115 bytes; anything much longer is not one.
MAX_RAW_TX_BYTES = 2048

_AMOUNT = re.compile(r"(0|[1-9][0-9]*)(?:\.([0-9]+))?")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_TX_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_HEX = re.compile(r"(?:0x)?([0-9a-fA-F]*)")


class InvalidAmountError(InvalidRequestError):
    code = "invalid_amount"


class InvalidTransactionError(InvalidRequestError):
    code = "invalid_transaction"


class TransactionMismatchError(InvalidRequestError):
    code = "tx_mismatch"


def parse_amount(text: str, *, max_wei: int, field: str = "amount_eth") -> int:
    """A decimal string of ETH as wei, exactly: "0.5" is 500000000000000000."""
    if len(text) > MAX_AMOUNT_CHARS:
        raise InvalidAmountError(f"{field}: at most {MAX_AMOUNT_CHARS} characters")
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise InvalidAmountError(
            f"{field}: write the amount as a plain decimal number of ETH, like 0.05 "
            "(digits and one point; no sign, exponent or spaces)"
        )
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > ETH_DECIMALS:
        raise InvalidAmountError(
            f"{field}: at most {ETH_DECIMALS} decimals (1 wei is 0.000000000000000001 ETH)"
        )
    wei = int(whole) * WEI_PER_ETH + int(fraction.ljust(ETH_DECIMALS, "0") or "0")
    if wei <= 0:
        raise InvalidAmountError(f"{field}: the amount must be more than 0")
    if wei > max_wei:
        raise InvalidAmountError(f"{field}: at most {format_eth(max_wei)} ETH per tip")
    return wei


def format_eth(wei: int) -> str:
    """Wei as the shortest exact decimal string of ETH: 1500000000000000000 is "1.5"."""
    whole, fraction = divmod(wei, WEI_PER_ETH)
    if not fraction:
        return str(whole)
    return f"{whole}.{str(fraction).rjust(ETH_DECIMALS, '0').rstrip('0')}"


def normalize_address(text: str, *, field: str) -> str:
    """A 0x-prefixed 20-byte address in lower case (how identities store it)."""
    if not _ADDRESS.fullmatch(text):
        raise InvalidRequestError(f"{field}: not an Ethereum address (0x and 40 hex digits)")
    return text.lower()


def checksum(address: str) -> str:
    return str(to_checksum_address(address))


def normalize_tx_hash(text: str) -> str:
    if not _TX_HASH.fullmatch(text):
        raise InvalidTransactionError("tx_hash: not a transaction hash (0x and 64 hex digits)")
    return text.lower()


@dataclass(frozen=True)
class Fees:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int


def choose_fees(next_base_fee: int, priority_fee: int) -> Fees:
    """EIP-1559 fees as wallets choose them: room for the base fee to double."""
    priority = max(priority_fee, 0)
    return Fees(max_fee_per_gas=2 * next_base_fee + priority, max_priority_fee_per_gas=priority)


def gas_limit_for(estimate: int) -> int:
    """The estimate for a plain transfer; a margin of a fifth for recipients with code."""
    return estimate if estimate <= TRANSFER_GAS else estimate + estimate // 5


def unsigned_transaction(
    *,
    chain_id: int,
    from_address: str,
    to_address: str,
    value_wei: int,
    nonce: int,
    gas_limit: int,
    fees: Fees,
) -> dict[str, str]:
    """A type-2 transaction in the hex form wallets take (MetaMask's eth_sendTransaction)."""
    return {
        "type": "0x2",
        "chainId": hex(chain_id),
        "from": checksum(from_address),
        "to": checksum(to_address),
        "value": hex(value_wei),
        "nonce": hex(nonce),
        "gas": hex(gas_limit),
        "maxFeePerGas": hex(fees.max_fee_per_gas),
        "maxPriorityFeePerGas": hex(fees.max_priority_fee_per_gas),
        "data": "0x",
    }


@dataclass(frozen=True)
class SignedTransaction:
    raw: str
    hash: str
    sender: str
    chain_id: int
    nonce: int
    to: str
    value: int
    gas: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    data: bytes


def decode_signed(raw_hex: str) -> SignedTransaction:
    """Decode a signed type-2 transaction and recover who signed it."""
    match = _HEX.fullmatch(raw_hex)
    if match is None or not match.group(1) or len(match.group(1)) % 2:
        raise InvalidTransactionError("raw_transaction: not a hex string of whole bytes")
    raw = bytes.fromhex(match.group(1))
    if len(raw) > MAX_RAW_TX_BYTES:
        raise InvalidTransactionError(f"raw_transaction: at most {MAX_RAW_TX_BYTES} bytes")
    if raw[0] != 2:
        raise InvalidTransactionError(
            "raw_transaction: not an EIP-1559 (type 2) transaction; sign the one prepared"
        )
    try:
        fields: dict[str, Any] = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
        sender = Account.recover_transaction(raw)
    except Exception:
        # eth-account raises a dozen kinds for malformed RLP or a bad signature.
        raise InvalidTransactionError(
            "raw_transaction: not a well-formed signed transaction"
        ) from None
    to = fields.get("to")
    return SignedTransaction(
        raw="0x" + raw.hex(),
        hash="0x" + keccak(raw).hex(),
        sender=str(sender).lower(),
        chain_id=int(fields["chainId"]),
        nonce=int(fields["nonce"]),
        to=("0x" + bytes(to).hex()) if to else "",
        value=int(fields["value"]),
        gas=int(fields["gas"]),
        max_fee_per_gas=int(fields["maxFeePerGas"]),
        max_priority_fee_per_gas=int(fields["maxPriorityFeePerGas"]),
        data=bytes(fields.get("data") or b""),
    )


@dataclass(frozen=True)
class Expected:
    """What a transaction must do to be the tip that was prepared."""

    chain_id: int
    from_address: str
    to_address: str
    value_wei: int


def mismatches(
    expected: Expected, *, chain_id: int | None, sender: str, to: str, value: int, data: bytes
) -> list[str]:
    """The fields in which a transaction differs from the prepared tip, in words.

    The nonce, gas and fees are the wallet's to choose and are not compared.
    ``chain_id`` None means the node did not say (legacy transactions).
    """
    problems = []
    if chain_id is not None and chain_id != expected.chain_id:
        problems.append(f"chain id is {chain_id}, the tip is on chain {expected.chain_id}")
    if sender.lower() != expected.from_address:
        problems.append(
            f"signed by {checksum(sender) if _ADDRESS.fullmatch(sender) else sender}, "
            f"the tip is from {checksum(expected.from_address)}"
        )
    if to.lower() != expected.to_address:
        shown = checksum(to) if _ADDRESS.fullmatch(to) else (to or "nobody (contract creation)")
        problems.append(f"sends to {shown}, the tip is to {checksum(expected.to_address)}")
    if value != expected.value_wei:
        problems.append(
            f"sends {format_eth(value)} ETH, the tip is {format_eth(expected.value_wei)} ETH"
        )
    if data:
        problems.append("carries call data; a tip is a plain transfer")
    return problems


def check_signed(expected: Expected, signed: SignedTransaction) -> None:
    problems = mismatches(
        expected,
        chain_id=signed.chain_id,
        sender=signed.sender,
        to=signed.to,
        value=signed.value,
        data=signed.data,
    )
    if problems:
        raise TransactionMismatchError(
            "the signed transaction is not the prepared tip: " + "; ".join(problems)
        )
