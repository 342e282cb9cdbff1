"""Wallet sign-in: EIP-55, EIP-4361 over EIP-191, SS58 and Substrate signatures."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import base58
import pytest
import sr25519
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from nacl.signing import SigningKey

from config.errors import InvalidRequestError, ParleyError
from crypto.wallets import (
    InvalidAddressError,
    SiweMessage,
    WalletSignatureError,
    decode_ss58,
    encode_ss58,
    new_nonce,
    normalize_eth_address,
    parse_siwe_message,
    parse_substrate_challenge,
    recover_eth_signer,
    substrate_challenge_text,
    verify_substrate_signature,
)

ISSUED = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
EXPIRES = ISSUED + timedelta(minutes=10)
NONCE = "abcDEF123456"
ALICE_KEY = bytes.fromhex("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d")
ALICE_42 = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
JUNK: list[Any] = [None, "", " ", "0x", "x" * 10_240, "é" * 50, "\x00", 42, b"bytes", "🙂"]


def eth_sign(account: LocalAccount, text: str) -> str:
    return "0x" + bytes(account.sign_message(encode_defunct(text=text)).signature).hex()


def siwe(signer: str, **changes: Any) -> SiweMessage:
    fields: dict[str, Any] = {
        "domain": "chat.example.org",
        "address": signer,
        "statement": "Sign in to Parley.",
        "uri": "https://chat.example.org/login",
        "version": "1",
        "chain_id": 1,
        "nonce": NONCE,
        "issued_at": ISSUED,
        "expiration_time": EXPIRES,
    }
    fields.update(changes)
    return SiweMessage(**fields)


def flip_case(address: str) -> str:
    """Swap the case of the first letter in the hex digits (breaks an EIP-55 checksum)."""
    for i, ch in enumerate(address[2:], start=2):
        if ch.isalpha():
            return address[:i] + ch.swapcase() + address[i + 1 :]
    raise AssertionError("address has no letters")


# --- EIP-55 ------------------------------------------------------------------------------


def test_eip55_vector_is_kept() -> None:
    """The EIP-55 spec's own checksummed address is accepted and returned unchanged."""
    vector = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    assert normalize_eth_address(vector) == vector


def test_single_case_addresses_are_checksummed() -> None:
    """All-lower and all-upper hex (no checksum) normalize to the EIP-55 form."""
    vector = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    assert normalize_eth_address(vector.lower()) == vector
    assert normalize_eth_address("0x" + vector[2:].upper()) == vector


def test_mixed_case_with_wrong_checksum_is_refused() -> None:
    """A mixed-case address whose EIP-55 checksum is wrong raises InvalidAddressError."""
    with pytest.raises(InvalidAddressError, match="EIP-55") as info:
        normalize_eth_address(flip_case("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"))
    assert info.value.code == "invalid_address"
    assert info.value.status == 422


@pytest.mark.parametrize(
    "text",
    [
        *JUNK,
        "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0x" + "a" * 39,
        "0x" + "a" * 41,
        "0x" + "g" * 40,
        "0X" + "a" * 40,
        " 0x" + "a" * 40,
        "0x" + "a" * 40 + "\n",
    ],
)
def test_malformed_eth_addresses_raise_invalid_address(text: Any) -> None:
    """Anything but 0x + 40 hex digits raises InvalidAddressError and nothing else."""
    with pytest.raises(InvalidAddressError, match="address"):
        normalize_eth_address(text)


# --- EIP-4361 text -----------------------------------------------------------------------


def test_siwe_text_has_the_exact_eip4361_layout() -> None:
    """to_text renders the EIP-4361 lines in order, RFC 3339 UTC times, no final newline."""
    address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    assert siwe(address).to_text() == (
        "chat.example.org wants you to sign in with your Ethereum account:\n"
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed\n"
        "\n"
        "Sign in to Parley.\n"
        "\n"
        "URI: https://chat.example.org/login\n"
        "Version: 1\n"
        "Chain ID: 1\n"
        "Nonce: abcDEF123456\n"
        "Issued At: 2026-11-21T10:00:00Z\n"
        "Expiration Time: 2026-11-21T10:10:00Z"
    )


def test_siwe_parse_round_trips() -> None:
    """parse_siwe_message(to_text()) gives back an equal message."""
    message = siwe(Account.create().address, chain_id=137, uri="http://localhost:8000/")
    assert parse_siwe_message(message.to_text()) == message


def test_siwe_without_statement_round_trips() -> None:
    """An empty statement renders as EIP-4361's omitted statement and parses back."""
    message = siwe(Account.create().address, statement="")
    text = message.to_text()
    assert "\n\n\nURI: " in text
    assert parse_siwe_message(text) == message


def test_siwe_times_are_normalized_to_utc() -> None:
    """Aware datetimes in another zone are stored and rendered in UTC with Z."""
    plus2 = timezone(timedelta(hours=2))
    message = siwe(Account.create().address, issued_at=ISSUED.astimezone(plus2))
    assert message.issued_at == ISSUED and message.issued_at.tzinfo == UTC
    assert "Issued At: 2026-11-21T10:00:00Z" in message.to_text()


def test_siwe_fractional_seconds_round_trip() -> None:
    """Microseconds survive to_text and parse unchanged."""
    message = siwe(Account.create().address, issued_at=ISSUED.replace(microsecond=123456))
    assert "Issued At: 2026-11-21T10:00:00.123456Z" in message.to_text()
    assert parse_siwe_message(message.to_text()) == message


def test_siwe_accepts_an_rfc3339_offset() -> None:
    """A numeric RFC 3339 offset is accepted and converted to UTC."""
    text = (
        siwe(Account.create().address)
        .to_text()
        .replace("Issued At: 2026-11-21T10:00:00Z", "Issued At: 2026-11-21T12:00:00+02:00")
    )
    assert parse_siwe_message(text).issued_at == ISSUED


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"issued_at": ISSUED.replace(tzinfo=None)}, "issued_at"),
        ({"expiration_time": ISSUED}, "expiration_time"),
        ({"chain_id": 0}, "chain_id"),
        ({"chain_id": True}, "chain_id"),
        ({"version": "2"}, "version"),
        ({"nonce": "short1"}, "nonce"),
        ({"nonce": "has-dash-1234"}, "nonce"),
        ({"domain": "evil.example/path"}, "domain"),
        ({"statement": "two\nlines"}, "statement"),
        ({"statement": "x" * 513}, "statement"),
        ({"uri": "no scheme"}, "uri"),
        ({"address": "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"}, "address"),
    ],
)
def test_siwe_constructor_validates_fields(changes: dict[str, Any], field: str) -> None:
    """Building a SiweMessage with an invalid field raises invalid_message naming the field."""
    with pytest.raises(InvalidRequestError, match=f"^{field}:") as info:
        siwe("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", **changes)
    assert info.value.code == "invalid_message"


GOOD = siwe("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed").to_text()


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (GOOD.replace("wants you", "asks you"), "line 1"),
        (GOOD.replace("chat.example.org wants", "chat example wants"), "line 1"),
        (GOOD.replace("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0x" + "5a" * 20), "line 2"),
        (GOOD.replace("Aed\n\nSign", "Aed\nX\nSign"), "line 3"),
        (GOOD.replace("Parley.\n\n", "Parley.\nX\n"), "line 5"),
        (GOOD.replace("Sign in to Parley.", "Sign in <now>"), "line 4"),
        (GOOD.replace("URI: ", "Uri: "), "line 6"),
        (GOOD.replace("URI: https://chat.example.org/login", "URI: has space"), "line 6"),
        (GOOD.replace("Version: 1", "Version: 2"), "line 7"),
        (GOOD.replace("Chain ID: 1", "Chain ID: 01"), "line 8"),
        (GOOD.replace("Chain ID: 1", "Chain ID: one"), "line 8"),
        (GOOD.replace("Nonce: abcDEF123456", "Nonce: abc"), "line 9"),
        (GOOD.replace("Nonce: abcDEF123456", "Nonce: abcDEF12345-"), "line 9"),
        (GOOD.replace("2026-11-21T10:00:00Z", "2026-11-21 10:00:00"), "line 10"),
        (GOOD.replace("2026-11-21T10:00:00Z", "2026-13-45T10:00:00Z"), "line 10"),
        (GOOD.replace("2026-11-21T10:10:00Z", "tomorrow"), "line 11"),
        # Valid RFC 3339 whose UTC falls outside what a datetime holds.
        (GOOD.replace("2026-11-21T10:00:00Z", "0001-01-01T00:00:00+01:00"), "line 10"),
        (GOOD.replace("2026-11-21T10:10:00Z", "9999-12-31T23:59:59-01:00"), "line 11"),
        (GOOD.replace("Nonce: abcDEF123456\n", ""), "expected 11 lines"),
        (GOOD + "\n", "expected 11 lines"),
        (GOOD + "\nResources:", "expected 11 lines"),
        (GOOD.replace("\n", "\r\n"), "CRLF"),
        (GOOD.replace("Sign in to Parley.", "x" * 2000), "longer than 2048"),
        ("chat.example.org wants you to sign in with your Ethereum account:", "expected 10 or 11"),
    ],
)
def test_siwe_parser_names_the_bad_line(text: str, where: str) -> None:
    """Each deviation from the exact layout raises invalid_message naming the line."""
    with pytest.raises(InvalidRequestError, match=where) as info:
        parse_siwe_message(text)
    assert info.value.code == "invalid_message"


@pytest.mark.parametrize("text", JUNK)
def test_siwe_parser_junk_raises_only_invalid_message(text: Any) -> None:
    """Empty, huge, non-string or random input raises InvalidRequestError only."""
    with pytest.raises(InvalidRequestError):
        parse_siwe_message(text)


def test_new_nonce_is_an_eip4361_nonce() -> None:
    """new_nonce gives distinct alphanumeric nonces a SiweMessage accepts."""
    nonces = {new_nonce() for _ in range(100)}
    assert len(nonces) == 100
    assert all(n.isascii() and n.isalnum() and len(n) == 24 for n in nonces)
    siwe(Account.create().address, nonce=nonces.pop())


# --- EIP-191 recovery --------------------------------------------------------------------


def test_recover_returns_the_signer() -> None:
    """A real personal_sign signature over the SIWE text recovers the signing address."""
    account = Account.create()
    text = siwe(account.address).to_text()
    assert recover_eth_signer(text, eth_sign(account, text)) == account.address


def test_signature_by_another_key_recovers_another_address() -> None:
    """A signature made by a different key does not recover the claimed address."""
    claimed, other = Account.create(), Account.create()
    text = siwe(claimed.address).to_text()
    assert recover_eth_signer(text, eth_sign(other, text)) == other.address != claimed.address


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("Chain ID: 1", "Chain ID: 5"),
        ("chat.example.org wants", "evil.example.org wants"),
        ("Nonce: abcDEF123456", "Nonce: abcDEF123457"),
        ("Parley.", "Parley!"),
    ],
)
def test_altered_text_changes_the_recovered_signer(old: str, new: str) -> None:
    """Changing the chain id, domain, nonce or one character changes parse and recovery."""
    account = Account.create()
    text = siwe(account.address).to_text()
    signature = eth_sign(account, text)
    altered = text.replace(old, new)
    assert altered != text
    assert parse_siwe_message(altered) != parse_siwe_message(text)
    assert recover_eth_signer(altered, signature) != account.address


@pytest.mark.parametrize("v_offset", [0, -27])
def test_recover_accepts_v_0_1_27_28(v_offset: int) -> None:
    """Both v encodings (27/28 and 0/1) recover the signer."""
    account = Account.create()
    for i in range(4):  # several signatures so both parities of v are seen
        text = f"message {i}"
        raw = bytes.fromhex(eth_sign(account, text)[2:])
        signature = raw[:64] + bytes([raw[64] + v_offset])
        assert signature[64] in {0, 1, 27, 28}
        assert recover_eth_signer(text, "0x" + signature.hex()) == account.address
        assert recover_eth_signer(text, signature.hex()) == account.address


def test_high_s_twin_is_refused() -> None:
    """The malleable high-s twin of a valid signature is refused (EIP-2)."""
    account = Account.create()
    raw = bytes.fromhex(eth_sign(account, "hello")[2:])
    s = int.from_bytes(raw[32:64], "big")
    twin = raw[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - raw[64]])
    with pytest.raises(WalletSignatureError, match="low s"):
        recover_eth_signer("hello", "0x" + twin.hex())


def valid_eth_signature() -> str:
    return eth_sign(Account.create(), "hello")


@pytest.mark.parametrize(
    "signature",
    [
        *JUNK,
        "0x" + "00" * 65,
        "0x" + "ff" * 65,
        "0x" + "11" * 64,
        "0x" + "11" * 66,
        "0x" + "zz" * 65,
        valid_eth_signature()[:-2] + "1d",
        valid_eth_signature()[:-2] + "02",
        valid_eth_signature() + "\n",
        "0x0x" + "11" * 64,
    ],
)
def test_malformed_eth_signatures_raise_wallet_signature_error(signature: Any) -> None:
    """Bad length, bad hex, bad v, zero or out-of-range r/s raise WalletSignatureError only."""
    with pytest.raises(WalletSignatureError, match="signature") as info:
        recover_eth_signer("hello", signature)
    assert info.value.code == "invalid_signature"
    assert info.value.status == 401


@pytest.mark.parametrize("message", [None, "", "x" * 10_240, b"hello"])
def test_malformed_eth_message_raises_wallet_signature_error(message: Any) -> None:
    """A missing, non-string or oversized message raises WalletSignatureError."""
    with pytest.raises(WalletSignatureError, match="message"):
        recover_eth_signer(message, valid_eth_signature())


# --- SS58 --------------------------------------------------------------------------------


def test_alice_known_vector() -> None:
    """Alice's public key with prefix 42 is 5GrwvaEF... and decodes back."""
    assert encode_ss58(ALICE_KEY, 42) == ALICE_42
    assert decode_ss58(ALICE_42) == (42, ALICE_KEY)


@pytest.mark.parametrize(
    ("prefix", "address"),
    [
        (0, "15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5"),
        (2, "HNZata7iMYWmk5RvZRTiAsSDhV8366zq2YGb3tLH5Upf74F"),
    ],
)
def test_alice_on_polkadot_and_kusama(prefix: int, address: str) -> None:
    """Alice re-encodes to her published Polkadot and Kusama addresses."""
    assert encode_ss58(ALICE_KEY, prefix) == address
    assert decode_ss58(address) == (prefix, ALICE_KEY)


# Subkey / polkadot.js vectors (util-crypto address/encode.spec.ts) for two-byte prefixes.
SUBKEY_VECTORS = [
    (
        65,
        "08e8969768fc14399930d4b8d693f68a2ff6c6a597325d6946095e5e9d9d1b0e",
        "cLtA6nCDyvwKcEHH4QkZDSHMhS9s78BvUJUsKUbUAn1Jc2SCF",
    ),
    (
        252,
        "5c64f1151f0ce4358c27238fb20c88e7c899825436f565410724c8c2c5add869",
        "xw5g1Eec8LT99pZLZMaTWwrwvNtfM6vrSuZeVbtEszCDUwByg",
    ),
    (
        255,
        "66cd6cf085627d6c85af1aaf2bd10cf843033e929b4e3b1c2ba8e4aa46fe111b",
        "yGF4JP7q5AK46d1FPCEm9sYQ4KooSjHMpyVAjLnsCSWVafPnf",
    ),
    (
        4242,
        "44d5a3ac156335ea99d33a83c57c7146c40c8e2260a8a4adf4e7a86256454651",
        "mHm8k9Emsvyfp3piCauSH684iA6NakctF8dySQcX94GDdrJrE",
    ),
    (
        14269,
        "88f01441682a17b52d6ae12d1a5670cf675fd254897efabaa5069eb3a701ab73",
        "r6Gr4gaMP8TsjhFbqvZhv3YvnasugLiRJpzpRHifsqqG18UXa",
    ),
]


@pytest.mark.parametrize(("prefix", "key_hex", "address"), SUBKEY_VECTORS)
def test_two_byte_prefix_vectors(prefix: int, key_hex: str, address: str) -> None:
    """Two-byte prefixes encode and decode exactly like Subkey and polkadot.js."""
    assert encode_ss58(bytes.fromhex(key_hex), prefix) == address
    assert decode_ss58(address) == (prefix, bytes.fromhex(key_hex))


@pytest.mark.parametrize("prefix", [0, 1, 2, 42, 63, 64, 255, 256, 16383])
def test_ss58_round_trip(prefix: int) -> None:
    """Random keys round-trip through encode_ss58 and decode_ss58 for each prefix size."""
    for _ in range(20):
        key = os.urandom(32)
        assert decode_ss58(encode_ss58(key, prefix)) == (prefix, key)


def test_tampered_checksum_is_refused() -> None:
    """Changing one checksum byte raises InvalidAddressError about the checksum."""
    raw = bytearray(base58.b58decode(ALICE_42))
    raw[-1] ^= 1
    with pytest.raises(InvalidAddressError, match="bad SS58 checksum"):
        decode_ss58(base58.b58encode(bytes(raw)).decode())


def test_tampered_key_byte_is_refused() -> None:
    """Changing one key byte (same checksum) fails the checksum."""
    raw = bytearray(base58.b58decode(ALICE_42))
    raw[10] ^= 0x80
    with pytest.raises(InvalidAddressError, match="checksum"):
        decode_ss58(base58.b58encode(bytes(raw)).decode())


def test_changed_prefix_byte_is_refused() -> None:
    """Moving an address to another network without recomputing the checksum fails."""
    raw = bytearray(base58.b58decode(ALICE_42))
    raw[0] = 0
    with pytest.raises(InvalidAddressError, match="checksum"):
        decode_ss58(base58.b58encode(bytes(raw)).decode())


def test_disallowed_prefix_is_refused() -> None:
    """allowed_prefixes restricts the networks; others raise InvalidAddressError."""
    assert decode_ss58(ALICE_42, allowed_prefixes={42}) == (42, ALICE_KEY)
    with pytest.raises(InvalidAddressError, match="prefix 42 is not accepted"):
        decode_ss58(ALICE_42, allowed_prefixes={0, 2})


def with_checksum(prefix_bytes: bytes, key: bytes) -> str:
    digest = hashlib.blake2b(b"SS58PRE" + prefix_bytes + key, digest_size=64).digest()
    return base58.b58encode(prefix_bytes + key + digest[:2]).decode()


def test_non_canonical_two_byte_prefix_is_refused() -> None:
    """Prefix 42 written in the two-byte form (valid checksum) is refused."""
    first, second = ((42 & 0xFC) >> 2) | 0x40, (42 >> 8) | ((42 & 0x03) << 6)
    address = with_checksum(bytes([first, second]), ALICE_KEY)
    with pytest.raises(InvalidAddressError, match="non-canonical"):
        decode_ss58(address)


@pytest.mark.parametrize(
    ("prefix_bytes", "key", "match"),
    [
        (b"\x80", ALICE_KEY, "reserved"),
        (b"\x2e", ALICE_KEY, "reserved"),
        (b"\x2a", ALICE_KEY[:31], "length"),
        (b"\x2a", ALICE_KEY + b"\x00", "length"),
        (b"\x2a", b"\x00" * 33, "length"),
        (b"\x2a", b"", "length"),
    ],
)
def test_reserved_prefixes_and_other_lengths_are_refused(
    prefix_bytes: bytes, key: bytes, match: str
) -> None:
    """Prefix byte >= 128, prefixes 46/47 and non-32-byte ids fail despite a good checksum."""
    with pytest.raises(InvalidAddressError, match=match):
        decode_ss58(with_checksum(prefix_bytes, key))


@pytest.mark.parametrize(
    "address",
    [
        *JUNK,
        "0OIl" * 12,
        ALICE_42[:-1] + "0",
        ALICE_42 + "1",
        ALICE_42[1:],
        "1" * 48,
        " " + ALICE_42,
        ALICE_42.lower(),
        ALICE_42 * 2,
    ],
)
def test_malformed_ss58_raises_invalid_address(address: Any) -> None:
    """Bad base58, bad length, wrong case, junk and 10 KB strings raise InvalidAddressError only."""
    with pytest.raises(InvalidAddressError, match=r"^address: ") as info:
        decode_ss58(address)
    assert info.value.code == "invalid_address"


@pytest.mark.parametrize(
    ("key", "prefix"),
    [(b"\x00" * 31, 42), (b"\x00" * 32, -1), (b"\x00" * 32, 16384), (b"\x00" * 32, 46)],
)
def test_encode_ss58_rejects_bad_arguments(key: bytes, prefix: int) -> None:
    """encode_ss58 raises ValueError for a wrong key length or an invalid prefix."""
    with pytest.raises(ValueError, match="must be"):
        encode_ss58(key, prefix)


# --- Substrate signatures ----------------------------------------------------------------


def substrate_wallet(scheme: str) -> tuple[bytes, Callable[[bytes], bytes]]:
    """A fresh key pair of ``scheme``: (public key, function signing bytes)."""
    if scheme == "ed25519":
        key = SigningKey.generate()

        def sign_ed25519(message: bytes) -> bytes:
            return key.sign(message).signature

        return bytes(key.verify_key), sign_ed25519
    public, secret = sr25519.pair_from_seed(os.urandom(32))

    def sign_sr25519(message: bytes) -> bytes:
        return bytes(sr25519.sign((public, secret), message))

    return bytes(public), sign_sr25519


def sign(scheme: str, message: bytes) -> tuple[bytes, str]:
    """A fresh key pair of ``scheme``: (public key, 0x-hex signature of ``message``)."""
    public, sign_fn = substrate_wallet(scheme)
    return public, "0x" + sign_fn(message).hex()


SCHEMES = ["ed25519", "sr25519"]
MESSAGE = b"Parley Authentication nonce abcDEF123456"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_raw_signature_verifies(scheme: str) -> None:
    """A signature over the bare message verifies."""
    public, signature = sign(scheme, MESSAGE)
    verify_substrate_signature(public, MESSAGE, signature, scheme=scheme)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_bytes_wrapped_signature_verifies(scheme: str) -> None:
    """A polkadot.js signRaw signature over <Bytes>message</Bytes> verifies."""
    public, signature = sign(scheme, b"<Bytes>" + MESSAGE + b"</Bytes>")
    verify_substrate_signature(public, MESSAGE, signature, scheme=scheme)
    verify_substrate_signature(public, MESSAGE, signature[2:], scheme=scheme)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_signature_by_another_key_fails(scheme: str) -> None:
    """A valid signature checked against another account's key is refused."""
    _, signature = sign(scheme, MESSAGE)
    other, _ = sign(scheme, MESSAGE)
    with pytest.raises(WalletSignatureError, match="not a valid"):
        verify_substrate_signature(other, MESSAGE, signature, scheme=scheme)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("wrapped", [False, True])
def test_one_changed_byte_fails(scheme: str, wrapped: bool) -> None:
    """A message altered by one character fails, wrapped or not."""
    signed = b"<Bytes>" + MESSAGE + b"</Bytes>" if wrapped else MESSAGE
    public, signature = sign(scheme, signed)
    with pytest.raises(WalletSignatureError):
        verify_substrate_signature(
            public, MESSAGE.replace(b"123", b"124"), signature, scheme=scheme
        )


def test_wrong_scheme_fails() -> None:
    """An ed25519 signature checked as sr25519 (and vice versa) is refused."""
    public, signature = sign("ed25519", MESSAGE)
    with pytest.raises(WalletSignatureError):
        verify_substrate_signature(public, MESSAGE, signature, scheme="sr25519")
    public, signature = sign("sr25519", MESSAGE)
    with pytest.raises(WalletSignatureError):
        verify_substrate_signature(public, MESSAGE, signature, scheme="ed25519")


def test_other_wrappings_are_not_accepted() -> None:
    """Only the exact <Bytes>...</Bytes> wrapping is tried, not other envelopes."""
    public, signature = sign("sr25519", b"<Bytes>" + MESSAGE + b"</Bytes>\n")
    with pytest.raises(WalletSignatureError):
        verify_substrate_signature(public, MESSAGE, signature, scheme="sr25519")


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(
    "signature",
    [
        *JUNK,
        "0x" + "00" * 64,
        "0x" + "ff" * 64,
        "0x" + "11" * 63,
        "0x" + "11" * 65,
        "0x" + "zz" * 64,
        "0x" + "11" * 64 + " ",
    ],
)
def test_malformed_substrate_signatures_raise_wallet_signature_error(
    scheme: str, signature: Any
) -> None:
    """Wrong length, non-hex, all-zero or junk signatures raise WalletSignatureError only."""
    public, _ = sign(scheme, MESSAGE)
    with pytest.raises(WalletSignatureError):
        verify_substrate_signature(public, MESSAGE, signature, scheme=scheme)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(
    "public", [None, b"", b"\x00" * 31, b"\x00" * 33, b"\xff" * 32, b"\x00" * 32, "a" * 32]
)
def test_malformed_public_keys_raise_wallet_signature_error(scheme: str, public: Any) -> None:
    """Wrong-length, non-bytes or invalid-point public keys raise WalletSignatureError only."""
    _, signature = sign(scheme, MESSAGE)
    with pytest.raises(WalletSignatureError):
        verify_substrate_signature(public, MESSAGE, signature, scheme=scheme)


@pytest.mark.parametrize("message", [None, b"", "text", b"x" * 10_240])
def test_malformed_substrate_messages_raise_wallet_signature_error(message: Any) -> None:
    """A missing, non-bytes or oversized message raises WalletSignatureError."""
    public, signature = sign("ed25519", MESSAGE)
    with pytest.raises(WalletSignatureError, match="message"):
        verify_substrate_signature(public, message, signature, scheme="ed25519")


@pytest.mark.parametrize("scheme", ["", "ecdsa", "ED25519", None])
def test_unknown_scheme_raises_wallet_signature_error(scheme: Any) -> None:
    """A scheme other than ed25519/sr25519 raises WalletSignatureError."""
    public, signature = sign("ed25519", MESSAGE)
    with pytest.raises(WalletSignatureError, match="scheme"):
        verify_substrate_signature(public, MESSAGE, signature, scheme=scheme)


# --- Substrate challenge text ------------------------------------------------------------


def test_substrate_challenge_round_trip() -> None:
    """The challenge text contains the fields and parses back to them."""
    text = substrate_challenge_text("chat.example.org", ALICE_42, NONCE, ISSUED, EXPIRES)
    assert text.splitlines()[:3] == [
        "Parley Authentication",
        "chat.example.org wants you to sign in with your Substrate account:",
        ALICE_42,
    ]
    assert text.endswith(
        "Nonce: abcDEF123456\n"
        "Issued At: 2026-11-21T10:00:00Z\n"
        "Expiration Time: 2026-11-21T10:10:00Z"
    )
    assert parse_substrate_challenge(text) == {
        "domain": "chat.example.org",
        "address": ALICE_42,
        "nonce": NONCE,
        "issued_at": ISSUED,
        "expiration_time": EXPIRES,
    }


@pytest.mark.parametrize("scheme", SCHEMES)
def test_substrate_sign_in_end_to_end(scheme: str) -> None:
    """A wallet signs the challenge (<Bytes>-wrapped); parse, SS58-decode and verify succeed."""
    public, sign_fn = substrate_wallet(scheme)
    address = encode_ss58(public, 42)
    text = substrate_challenge_text("chat.example.org", address, new_nonce(), ISSUED, EXPIRES)
    signature = "0x" + sign_fn(b"<Bytes>" + text.encode() + b"</Bytes>").hex()
    parsed = parse_substrate_challenge(text)
    _, key_from_address = decode_ss58(parsed["address"], allowed_prefixes={42})
    verify_substrate_signature(key_from_address, text.encode(), signature, scheme=scheme)
    altered = text.replace(parsed["nonce"], new_nonce())
    assert parse_substrate_challenge(altered)["nonce"] != parsed["nonce"]
    with pytest.raises(WalletSignatureError):
        verify_substrate_signature(key_from_address, altered.encode(), signature, scheme=scheme)


SUBSTRATE_GOOD = substrate_challenge_text("chat.example.org", ALICE_42, NONCE, ISSUED, EXPIRES)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (SUBSTRATE_GOOD.replace("Parley Authentication", "Glorious Authentication"), "line 1"),
        (SUBSTRATE_GOOD.replace("Substrate account", "Ethereum account"), "line 2"),
        (SUBSTRATE_GOOD.replace("chat.example.org", "bad domain"), "line 2"),
        (SUBSTRATE_GOOD.replace(ALICE_42, ALICE_42[:-1] + "Z"), "line 3"),
        (SUBSTRATE_GOOD.replace(ALICE_42, "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"), "line 3"),
        (SUBSTRATE_GOOD.replace(ALICE_42 + "\n\n", ALICE_42 + "\nX\n"), "line 4"),
        (SUBSTRATE_GOOD.replace("costs nothing.\n\n", "costs nothing.\nX\n"), "line 6"),
        (SUBSTRATE_GOOD.replace("costs nothing", "costs a lot"), "line 5"),
        (SUBSTRATE_GOOD.replace("Nonce: ", "nonce: "), "line 7"),
        (SUBSTRATE_GOOD.replace("Nonce: abcDEF123456", "Nonce: abc"), "line 7"),
        (SUBSTRATE_GOOD.replace("10:00:00Z", "10:00Z"), "line 8"),
        (SUBSTRATE_GOOD.replace("2026-11-21T10:00:00Z", "0001-01-01T00:00:00+01:00"), "line 8"),
        (SUBSTRATE_GOOD.replace("10:10:00Z", "09:00:00Z"), "expiration_time"),
        (SUBSTRATE_GOOD + "\n", "expected 9 lines"),
        (SUBSTRATE_GOOD.replace("\n", "\r\n"), "CRLF"),
    ],
)
def test_substrate_parser_names_the_bad_line(text: str, where: str) -> None:
    """Each deviation from the challenge layout raises invalid_message naming the line."""
    with pytest.raises(InvalidRequestError, match=where) as info:
        parse_substrate_challenge(text)
    assert info.value.code == "invalid_message"


@pytest.mark.parametrize("text", JUNK)
def test_substrate_parser_junk_raises_only_invalid_message(text: Any) -> None:
    """Empty, huge, non-string or random input raises InvalidRequestError only."""
    with pytest.raises(InvalidRequestError):
        parse_substrate_challenge(text)


def test_substrate_challenge_text_validates_its_inputs() -> None:
    """Building a challenge for a bad address, nonce or times raises the documented errors."""
    with pytest.raises(InvalidAddressError):
        substrate_challenge_text("chat.example.org", "not-ss58", NONCE, ISSUED, EXPIRES)
    with pytest.raises(InvalidRequestError, match="nonce"):
        substrate_challenge_text("chat.example.org", ALICE_42, "short", ISSUED, EXPIRES)
    with pytest.raises(InvalidRequestError, match="expiration_time"):
        substrate_challenge_text("chat.example.org", ALICE_42, NONCE, EXPIRES, ISSUED)


def test_every_error_is_a_parley_error() -> None:
    """The wallet errors sit under the one error root with their stable codes."""
    assert issubclass(WalletSignatureError, ParleyError)
    assert issubclass(InvalidAddressError, InvalidRequestError)
    assert (WalletSignatureError("x").code, WalletSignatureError("x").status) == (
        "invalid_signature",
        401,
    )
    assert (InvalidAddressError("x").code, InvalidAddressError("x").status) == (
        "invalid_address",
        422,
    )


def test_siwe_message_is_frozen() -> None:
    """A SiweMessage cannot be changed after validation."""
    message = siwe(Account.create().address)
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.nonce = "other12345"  # type: ignore[misc]
