"""Device proofs: the device's Ed25519 signature over its user id and both public keys."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from config.errors import InvalidRequestError
from crypto.devices import (
    InvalidDeviceKeyError,
    InvalidDeviceProofError,
    decode_b64url,
    device_proof_payload,
    encode_b64url,
    is_canonical_x25519,
    verify_device_proof,
)

USER_ID = "3f0c9a52-7d1e-4b8a-9c61-0e2f5a7b8c9d"
P = 2**255 - 19
# Ed25519 encodings of small-order points: the identity, the point of order 2,
# and one of order 8 (from libsodium's blocklist in ed25519_ref10.c).
IDENTITY = (1).to_bytes(32, "little")
ORDER_2 = ((2**255 - 19) - 1).to_bytes(32, "little")
ORDER_8 = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")


def raw(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@pytest.fixture
def signer() -> Ed25519PrivateKey:
    """The device's signing key, made on the 'device'."""
    return Ed25519PrivateKey.generate()


@pytest.fixture
def agreement() -> bytes:
    """The device's raw X25519 public key."""
    return raw(X25519PrivateKey.generate())


def prove(signer: Ed25519PrivateKey, agreement: bytes, user_id: str = USER_ID) -> bytes:
    return signer.sign(device_proof_payload(user_id, raw(signer), agreement))


def test_payload_layout_is_exact() -> None:
    """The payload is the tag, the user id, a NUL, then the two 32-byte keys."""
    signing, agreement = bytes(range(32)), bytes(range(32, 64))
    assert device_proof_payload("u-1", signing, agreement) == (
        b"parley-device-proof-v1\x00u-1\x00" + signing + agreement
    )


def test_payload_refuses_ambiguous_input() -> None:
    """Wrong key lengths, an empty id or a NUL in the id raise ValueError."""
    with pytest.raises(ValueError):
        device_proof_payload(USER_ID, bytes(31), bytes(32))
    with pytest.raises(ValueError):
        device_proof_payload(USER_ID, bytes(32), bytes(33))
    with pytest.raises(ValueError):
        device_proof_payload("", bytes(32), bytes(32))
    with pytest.raises(ValueError):
        device_proof_payload("a\x00b", bytes(32), bytes(32))


def test_valid_proof_passes(signer: Ed25519PrivateKey, agreement: bytes) -> None:
    """A proof signed by the device's own key over its own payload verifies."""
    verify_device_proof(USER_ID, raw(signer), agreement, prove(signer, agreement))


def test_proof_by_another_key_fails(signer: Ed25519PrivateKey, agreement: bytes) -> None:
    """A signature by a different key than the one registered is invalid_proof (422)."""
    other = Ed25519PrivateKey.generate()
    proof = other.sign(device_proof_payload(USER_ID, raw(signer), agreement))
    with pytest.raises(InvalidDeviceProofError) as caught:
        verify_device_proof(USER_ID, raw(signer), agreement, proof)
    assert caught.value.code == "invalid_proof" and caught.value.status == 422
    assert isinstance(caught.value, InvalidRequestError)


def test_proof_for_another_user_fails(signer: Ed25519PrivateKey, agreement: bytes) -> None:
    """A proof made for one account does not register the key to another."""
    proof = prove(signer, agreement, user_id=USER_ID)
    with pytest.raises(InvalidDeviceProofError):
        verify_device_proof(USER_ID[:-1] + "e", raw(signer), agreement, proof)


def test_proof_does_not_cover_another_agreement_key(
    signer: Ed25519PrivateKey, agreement: bytes
) -> None:
    """Swapping in another agreement key breaks the proof: the signing key vouches for it."""
    proof = prove(signer, agreement)
    with pytest.raises(InvalidDeviceProofError):
        verify_device_proof(USER_ID, raw(signer), raw(X25519PrivateKey.generate()), proof)


def test_altered_proof_fails(signer: Ed25519PrivateKey, agreement: bytes) -> None:
    """Flipping one bit of the signature makes it invalid."""
    proof = bytearray(prove(signer, agreement))
    proof[10] ^= 0x01
    with pytest.raises(InvalidDeviceProofError):
        verify_device_proof(USER_ID, raw(signer), agreement, bytes(proof))


def test_wrong_lengths_fail(signer: Ed25519PrivateKey, agreement: bytes) -> None:
    """Keys that are not 32 bytes are invalid_key; a proof that is not 64 bytes is invalid_proof."""
    proof = prove(signer, agreement)
    with pytest.raises(InvalidDeviceKeyError, match="signing_key"):
        verify_device_proof(USER_ID, raw(signer)[:31], agreement, proof)
    with pytest.raises(InvalidDeviceKeyError, match="agreement_key"):
        verify_device_proof(USER_ID, raw(signer), agreement + b"\x00", proof)
    with pytest.raises(InvalidDeviceProofError, match="64 bytes"):
        verify_device_proof(USER_ID, raw(signer), agreement, proof[:63])


@pytest.mark.parametrize("weak", [IDENTITY, ORDER_2, ORDER_8], ids=["identity", "order2", "order8"])
def test_small_order_signing_key_is_refused(weak: bytes, agreement: bytes) -> None:
    """A small-order key is refused even with a 'signature' that verifies for every message."""
    # For the identity point, R = identity and s = 0 satisfy the verification
    # equation for any message, so without the point check this would pass.
    forged = IDENTITY + bytes(32)
    with pytest.raises(InvalidDeviceKeyError, match="signing_key"):
        verify_device_proof(USER_ID, weak, agreement, forged)


def test_off_curve_signing_key_is_refused(agreement: bytes) -> None:
    """An encoding that is no point on the curve (y = 2) is invalid_key."""
    with pytest.raises(InvalidDeviceKeyError, match="signing_key"):
        verify_device_proof(USER_ID, (2).to_bytes(32, "little"), agreement, bytes(64))


@pytest.mark.parametrize("weak_u", [0, 1], ids=["u0", "u1"])
def test_small_order_agreement_key_is_refused(signer: Ed25519PrivateKey, weak_u: int) -> None:
    """An X25519 key whose shared secrets are all zeros (RFC 7748 section 6.1) is invalid_key."""
    weak = weak_u.to_bytes(32, "little")
    proof = prove(signer, weak)
    with pytest.raises(InvalidDeviceKeyError, match="agreement_key"):
        verify_device_proof(USER_ID, raw(signer), weak, proof)


def _top_bit_set(key: bytes) -> bytes:
    return key[:31] + bytes([key[31] | 0x80])


@pytest.mark.parametrize(
    "encode",
    [
        _top_bit_set,
        lambda key: (int.from_bytes(key, "little") + P).to_bytes(32, "little"),  # u < p: fits
        lambda key: (P + 9).to_bytes(32, "little"),
        lambda key: P.to_bytes(32, "little"),
    ],
    ids=["top-bit", "u-plus-p", "p-plus-9", "p"],
)
def test_non_canonical_agreement_key_is_refused(
    signer: Ed25519PrivateKey, agreement: bytes, encode: Any
) -> None:
    """Another encoding of a u-coordinate (top bit set, or u >= 2**255 - 19) is invalid_key.

    X25519 reads these as the canonical key's value, so they would agree the
    same secrets but put other bytes in an envelope's HKDF salt than the
    recipient re-encodes from its private key; the proof itself is valid.
    """
    weak = encode(agreement)
    assert weak != agreement
    with pytest.raises(InvalidDeviceKeyError, match="agreement_key: not a canonical") as caught:
        verify_device_proof(USER_ID, raw(signer), weak, prove(signer, weak))
    assert caught.value.code == "invalid_key" and caught.value.status == 422


def test_canonical_agreement_key_bounds() -> None:
    """is_canonical_x25519 accepts exactly 32-byte u < 2**255 - 19, as crypto.envelope requires."""
    assert is_canonical_x25519((P - 1).to_bytes(32, "little"))
    assert is_canonical_x25519(bytes(32))
    assert not is_canonical_x25519(P.to_bytes(32, "little"))
    assert not is_canonical_x25519((2**256 - 1).to_bytes(32, "little"))
    assert not is_canonical_x25519(bytes(31)) and not is_canonical_x25519(bytes(33))
    for _ in range(20):
        key = raw(X25519PrivateKey.generate())
        assert is_canonical_x25519(key) and not is_canonical_x25519(_top_bit_set(key))


def test_b64url_round_trip_and_strictness() -> None:
    """Keys travel as canonical unpadded base64url of the exact length."""
    key = bytes(range(32))
    text = encode_b64url(key)
    assert len(text) == 43 and "=" not in text
    assert decode_b64url(text, 32) == key
    for bad in (text + "=", text[:-1], text[:-1] + "B", text.replace("A", "+"), "not base64!", ""):
        with pytest.raises(ValueError):
            decode_b64url(bad, 32)
