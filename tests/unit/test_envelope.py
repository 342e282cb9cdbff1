"""End-to-end envelopes (parley-envelope-v1): encryption, the server's check, decryption, vectors.

Run this module as a script to rewrite envelope_vectors.json from the fixed
inputs below (only when the format changes on purpose, i.e. in a new version).
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import json
import random
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from config.errors import InvalidRequestError, ParleyError
from crypto.devices import encode_b64url
from crypto.envelope import (
    MAX_CIPHERTEXT_BYTES,
    MAX_PAYLOAD_BYTES,
    MAX_RECIPIENTS,
    EnvelopeDecryptionError,
    EnvelopeError,
    EnvelopeNotRecipientError,
    EnvelopeRandomness,
    EnvelopeSignatureError,
    ParsedEnvelope,
    WrappedKey,
    decrypt_envelope,
    derive_wrap_key,
    encrypt_envelope,
    header_bytes,
    key_commitment,
    parse_envelope,
    signature_payload,
    verify_envelope,
)

VECTORS_PATH = Path(__file__).with_name("envelope_vectors.json")
P = 2**255 - 19
SMALL_ORDER_U = [
    0,
    1,
    P - 1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
]
CONVERSATION_ID = "0b7f2c1e-5a4d-4e8f-9c3b-2d1e0f9a8b7c"
SENDER_USER_ID = "6e1d3c2b-0a9f-4e8d-8c7b-6a5f4e3d2c1b"
SENDER_DEVICE_ID = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
SENDER_OTHER_DEVICE_ID = "0fb2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
NOW_MS = 1_790_000_000_123


def new_id() -> str:
    return str(uuid.uuid4())


def raw(key: X25519PrivateKey | Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


@dataclasses.dataclass
class Party:
    """A sender with its signing key and a set of recipient devices."""

    signing_key: Ed25519PrivateKey
    devices: dict[str, X25519PrivateKey]

    def publics(self) -> dict[str, X25519PublicKey]:
        return {device_id: key.public_key() for device_id, key in self.devices.items()}

    def encrypt(self, payload: bytes = b'{"text":"hello"}', **changes: Any) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "payload": payload,
            "conversation_id": CONVERSATION_ID,
            "sender_user_id": SENDER_USER_ID,
            "sender_device_id": SENDER_DEVICE_ID,
            "client_msg_id": "m-1",
            "created_at": NOW_MS,
            "content_type": "application/json",
            "sender_signing_key": self.signing_key,
            "recipients": self.publics(),
        }
        arguments.update(changes)
        return encrypt_envelope(**arguments)


def make_party(devices: int) -> Party:
    return Party(
        signing_key=Ed25519PrivateKey.generate(),
        devices={new_id(): X25519PrivateKey.generate() for _ in range(devices)},
    )


@pytest.fixture
def party() -> Party:
    """A sender and three recipient devices."""
    return make_party(3)


@pytest.fixture
def envelope(party: Party) -> dict[str, Any]:
    """A fresh envelope from the sender to its three devices."""
    return party.encrypt()


def flip(text: str, index: int = 0) -> str:
    """The base64url text of the same bytes with one bit flipped."""
    padded = text + "=" * (-len(text) % 4)
    data = bytearray(base64.urlsafe_b64decode(padded))
    data[index] ^= 1
    return encode_b64url(bytes(data))


def resign(parsed: ParsedEnvelope, key: Ed25519PrivateKey) -> dict[str, Any]:
    """What a sender-key holder could produce: the envelope re-signed after a change."""
    return dataclasses.replace(parsed, signature=key.sign(signature_payload(parsed))).to_dict()


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("devices", [1, 20])
def test_round_trip_every_recipient_decrypts(devices: int) -> None:
    """With 1 and 20 recipient devices, the server check passes and every device decrypts."""
    party = make_party(devices)
    payload = json.dumps({"text": "héllo 👋"}).encode()
    envelope = json.loads(json.dumps(party.encrypt(payload)))
    public = party.signing_key.public_key()
    assert verify_envelope(envelope, public).header.client_msg_id == "m-1"
    assert len(envelope["recipients"]) == devices
    for device_id, key in party.devices.items():
        opened = decrypt_envelope(
            envelope, device_id=device_id, agreement_key=key, sender_signing_public=public
        )
        assert opened == payload


def test_wire_form_shape(party: Party, envelope: dict[str, Any]) -> None:
    """The wire form has the documented keys, sorted recipients and unpadded base64url sizes."""
    assert set(envelope) == {"v", "header", "recipients", "nonce", "ciphertext", "signature"}
    assert envelope["v"] == 1 and envelope["header"]["v"] == 1
    assert set(envelope["header"]) == {
        "v",
        "conversation_id",
        "sender_user_id",
        "sender_device_id",
        "client_msg_id",
        "created_at",
        "content_type",
        "ephemeral_key",
        "key_commitment",
    }
    ids = [entry["device_id"] for entry in envelope["recipients"]]
    assert ids == sorted(party.devices)
    assert all(
        set(entry) == {"device_id", "nonce", "wrapped_key"} for entry in envelope["recipients"]
    )
    assert all(len(entry["wrapped_key"]) == 64 for entry in envelope["recipients"])
    assert len(envelope["header"]["ephemeral_key"]) == 43
    assert len(envelope["header"]["key_commitment"]) == 43
    assert len(envelope["nonce"]) == 16 and len(envelope["signature"]) == 86
    assert "=" not in json.dumps(envelope)


def test_each_envelope_uses_fresh_randomness(party: Party) -> None:
    """Two envelopes of the same payload share no ephemeral key, nonce or ciphertext."""
    first, second = party.encrypt(), party.encrypt()
    assert first["header"]["ephemeral_key"] != second["header"]["ephemeral_key"]
    assert first["nonce"] != second["nonce"] and first["ciphertext"] != second["ciphertext"]


def test_recipient_mapping_order_does_not_matter(party: Party) -> None:
    """The same randomness with recipients given in another order gives the same envelope."""
    randomness = EnvelopeRandomness(
        content_key=bytes(range(32)),
        payload_nonce=bytes(12),
        ephemeral_key=X25519PrivateKey.from_private_bytes(bytes(range(1, 33))),
        wrap_nonces={device_id: bytes(12) for device_id in party.devices},
    )
    backwards = dict(reversed(party.publics().items()))
    assert party.encrypt(randomness=randomness) == party.encrypt(
        randomness=randomness, recipients=backwards
    )


def test_largest_payload_round_trips() -> None:
    """A payload of exactly MAX_PAYLOAD_BYTES is accepted and decrypts."""
    party = make_party(1)
    payload = b"x" * MAX_PAYLOAD_BYTES
    [(device_id, key)] = party.devices.items()
    envelope = party.encrypt(payload)
    public = party.signing_key.public_key()
    opened = decrypt_envelope(
        envelope, device_id=device_id, agreement_key=key, sender_signing_public=public
    )
    assert opened == payload


def test_server_flow_parse_then_verify(party: Party, envelope: dict[str, Any]) -> None:
    """parse_envelope names the sender device; verify_envelope accepts the parsed envelope."""
    parsed = parse_envelope(envelope)
    assert parsed.header.sender_device_id == SENDER_DEVICE_ID
    assert verify_envelope(parsed, party.signing_key.public_key()) is parsed
    assert parsed.to_dict() == envelope


# --- who can read --------------------------------------------------------------------------


def test_non_recipient_cannot_decrypt(party: Party, envelope: dict[str, Any]) -> None:
    """A device that is not in the recipient list gets EnvelopeNotRecipientError."""
    with pytest.raises(EnvelopeNotRecipientError) as info:
        decrypt_envelope(
            envelope,
            device_id=new_id(),
            agreement_key=X25519PrivateKey.generate(),
            sender_signing_public=party.signing_key.public_key(),
        )
    assert info.value.code == "not_a_recipient"


def test_listed_device_with_another_key_cannot_decrypt(
    party: Party, envelope: dict[str, Any]
) -> None:
    """Claiming a listed device id without its agreement key fails to unwrap."""
    device_id = next(iter(party.devices))
    with pytest.raises(EnvelopeDecryptionError, match="wrapped_key") as info:
        decrypt_envelope(
            envelope,
            device_id=device_id,
            agreement_key=X25519PrivateKey.generate(),
            sender_signing_public=party.signing_key.public_key(),
        )
    assert info.value.code == "undecryptable_envelope" and info.value.status == 422


def test_signature_by_another_device_key_fails(party: Party, envelope: dict[str, Any]) -> None:
    """An envelope checked against another device's signing key fails verify and decrypt."""
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(EnvelopeSignatureError):
        verify_envelope(envelope, other)
    device_id, key = next(iter(party.devices.items()))
    with pytest.raises(EnvelopeSignatureError):
        decrypt_envelope(
            envelope, device_id=device_id, agreement_key=key, sender_signing_public=other
        )


def test_error_codes_and_statuses(party: Party, envelope: dict[str, Any]) -> None:
    """Malformed is invalid_envelope, a bad signature invalid_signature, both 422 request errors."""
    with pytest.raises(EnvelopeError) as malformed:
        verify_envelope({}, party.signing_key.public_key())
    with pytest.raises(EnvelopeSignatureError) as forged:
        verify_envelope(envelope, Ed25519PrivateKey.generate().public_key())
    assert (malformed.value.code, malformed.value.status) == ("invalid_envelope", 422)
    assert (forged.value.code, forged.value.status) == ("invalid_signature", 422)
    assert isinstance(forged.value, InvalidRequestError)
    assert not issubclass(EnvelopeDecryptionError, EnvelopeError)


# --- tampering -------------------------------------------------------------------------------


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def change(data: dict[str, Any]) -> None:
        target: Any = data
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value(target[path[-1]]) if callable(value) else value

    return change


def _swap_recipients(data: dict[str, Any]) -> None:
    data["recipients"][0], data["recipients"][1] = data["recipients"][1], data["recipients"][0]


def _duplicate_recipient(data: dict[str, Any]) -> None:
    data["recipients"].insert(1, data["recipients"][0])


def _remove_recipient(data: dict[str, Any]) -> None:
    del data["recipients"][1]


def _add_recipient(data: dict[str, Any]) -> None:
    entry = dict(data["recipients"][-1], device_id="ffffffff-ffff-4fff-bfff-ffffffffffff")
    data["recipients"].append(entry)


OTHER_EPHEMERAL = encode_b64url(raw(X25519PrivateKey.generate()))

SIGNATURE_BREAKING = {
    "header.conversation_id": _set(("header", "conversation_id"), new_id()),
    "header.sender_user_id": _set(("header", "sender_user_id"), new_id()),
    "header.sender_device_id": _set(("header", "sender_device_id"), new_id()),
    "header.client_msg_id": _set(("header", "client_msg_id"), "m-2"),
    "header.created_at": _set(("header", "created_at"), NOW_MS + 1),
    "header.content_type": _set(("header", "content_type"), "text/plain"),
    "header.ephemeral_key": _set(("header", "ephemeral_key"), OTHER_EPHEMERAL),
    "header.key_commitment": _set(("header", "key_commitment"), flip),
    "header.key_commitment last byte": _set(
        ("header", "key_commitment"), lambda text: flip(text, 31)
    ),
    "recipients[0].wrapped_key": _set(("recipients", 0, "wrapped_key"), flip),
    "recipients[2].wrapped_key last byte": _set(
        ("recipients", 2, "wrapped_key"), lambda text: flip(text, 47)
    ),
    "recipients[1].nonce": _set(("recipients", 1, "nonce"), flip),
    "nonce": _set(("nonce",), flip),
    "ciphertext": _set(("ciphertext",), flip),
    "ciphertext tag": _set(("ciphertext",), lambda text: flip(text, -1)),
    "signature": _set(("signature",), flip),
    "signature last byte": _set(("signature",), lambda text: flip(text, 63)),
    "recipient removed": _remove_recipient,
    "recipient added": _add_recipient,
}

STRUCTURE_BREAKING = {
    "recipients reordered": (_swap_recipients, "recipients\\[1\\]: not in ascending"),
    "recipient duplicated": (_duplicate_recipient, "recipients\\[1\\].device_id: duplicate"),
    "v": (_set(("v",), 2), "^v: unsupported"),
    "header.v": (_set(("header", "v"), 2), "header.v: unsupported"),
    "extra key": (_set(("extra",), 1), "unknown keys"),
}


@pytest.mark.parametrize("name", list(SIGNATURE_BREAKING))
def test_tampering_breaks_the_signature(party: Party, envelope: dict[str, Any], name: str) -> None:
    """Changing any single signed field makes verify_envelope and decrypt_envelope fail."""
    tampered = copy.deepcopy(envelope)
    SIGNATURE_BREAKING[name](tampered)
    assert tampered != envelope
    public = party.signing_key.public_key()
    with pytest.raises(EnvelopeSignatureError, match=r"^signature:"):
        verify_envelope(tampered, public)
    for device_id, key in party.devices.items():
        with pytest.raises(EnvelopeSignatureError):
            decrypt_envelope(
                tampered, device_id=device_id, agreement_key=key, sender_signing_public=public
            )


@pytest.mark.parametrize("name", list(STRUCTURE_BREAKING))
def test_tampering_breaks_the_structure(party: Party, envelope: dict[str, Any], name: str) -> None:
    """Reordering, duplicating, re-versioning or extending the envelope is invalid_envelope."""
    change, match = STRUCTURE_BREAKING[name]
    tampered = copy.deepcopy(envelope)
    change(tampered)
    public = party.signing_key.public_key()
    with pytest.raises(EnvelopeError, match=match) as info:
        verify_envelope(tampered, public)
    assert info.value.code == "invalid_envelope"
    device_id, key = next(iter(party.devices.items()))
    with pytest.raises(EnvelopeError):
        decrypt_envelope(
            tampered, device_id=device_id, agreement_key=key, sender_signing_public=public
        )


def _other_header(parsed: ParsedEnvelope) -> ParsedEnvelope:
    header = dataclasses.replace(parsed.header, client_msg_id="m-2")
    return dataclasses.replace(parsed, header=header)


def _other_ephemeral(parsed: ParsedEnvelope) -> ParsedEnvelope:
    header = dataclasses.replace(parsed.header, ephemeral_key=raw(X25519PrivateKey.generate()))
    return dataclasses.replace(parsed, header=header)


def _relabel(parsed: ParsedEnvelope) -> ParsedEnvelope:
    # Keep the ids in place (sorted) and swap what they point at.
    first, second, *rest = parsed.recipients
    moved = (
        dataclasses.replace(first, nonce=second.nonce, wrapped_key=second.wrapped_key),
        dataclasses.replace(second, nonce=first.nonce, wrapped_key=first.wrapped_key),
    )
    return dataclasses.replace(parsed, recipients=(*moved, *rest))


def _flip_ciphertext(parsed: ParsedEnvelope) -> ParsedEnvelope:
    return dataclasses.replace(
        parsed, ciphertext=bytes([parsed.ciphertext[0] ^ 1]) + parsed.ciphertext[1:]
    )


def _flip_wrapped(parsed: ParsedEnvelope) -> ParsedEnvelope:
    entries = tuple(
        dataclasses.replace(
            entry, wrapped_key=bytes([entry.wrapped_key[0] ^ 1]) + entry.wrapped_key[1:]
        )
        for entry in parsed.recipients
    )
    return dataclasses.replace(parsed, recipients=entries)


RESIGNED = {
    "header (AAD of both layers)": (_other_header, "wrapped_key"),
    "ephemeral key": (_other_ephemeral, "wrapped_key"),
    "wrapped keys relabelled between device ids": (_relabel, "wrapped_key"),
    "wrapped key bit": (_flip_wrapped, "wrapped_key"),
    "ciphertext bit": (_flip_ciphertext, "ciphertext"),
}


@pytest.mark.parametrize("name", list(RESIGNED))
def test_resigned_tampering_fails_to_decrypt(
    party: Party, envelope: dict[str, Any], name: str
) -> None:
    """With a valid signature over changed bytes, the AEAD layers still refuse them."""
    change, match = RESIGNED[name]
    tampered = resign(change(parse_envelope(envelope)), party.signing_key)
    public = party.signing_key.public_key()
    verify_envelope(tampered, public)
    ids = sorted(party.devices)[:2] if name.startswith("wrapped keys relabelled") else party.devices
    for device_id in ids:
        with pytest.raises(EnvelopeDecryptionError, match=match):
            decrypt_envelope(
                tampered,
                device_id=device_id,
                agreement_key=party.devices[device_id],
                sender_signing_public=public,
            )


def test_device_id_is_bound_even_with_a_shared_agreement_key() -> None:
    """Two device ids with one agreement key: swapped entries, re-signed, still fail to open."""
    shared_key = X25519PrivateKey.generate()
    first_id, second_id = sorted([new_id(), new_id()])
    party = Party(Ed25519PrivateKey.generate(), {first_id: shared_key, second_id: shared_key})
    parsed = _relabel(parse_envelope(party.encrypt()))
    tampered = resign(parsed, party.signing_key)
    public = party.signing_key.public_key()
    for device_id in (first_id, second_id):
        with pytest.raises(EnvelopeDecryptionError, match="wrapped_key"):
            decrypt_envelope(
                tampered,
                device_id=device_id,
                agreement_key=shared_key,
                sender_signing_public=public,
            )


# --- key commitment --------------------------------------------------------------------------

_GCM_R = 0xE1 << 120  # GF(2^128) reduction, GCM's bit order (SP 800-38D section 6.3)


def _gf_mul(x: int, y: int) -> int:
    z = 0
    for bit in range(127, -1, -1):
        if (y >> bit) & 1:
            z ^= x
        x = (x >> 1) ^ _GCM_R if x & 1 else x >> 1
    return z


def _gf_pow(x: int, exponent: int) -> int:
    result = 1 << 127  # the field's 1 in GCM's bit order
    while exponent:
        if exponent & 1:
            result = _gf_mul(result, x)
        x, exponent = _gf_mul(x, x), exponent >> 1
    return result


def _blocks(data: bytes) -> list[int]:
    padded = data + bytes(-len(data) % 16)
    return [int.from_bytes(padded[i : i + 16], "big") for i in range(0, len(padded), 16)]


def _aes_block(key: bytes, block: bytes) -> int:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return int.from_bytes(encryptor.update(block) + encryptor.finalize(), "big")


def _ghash(hash_key: int, blocks: list[int]) -> int:
    y = 0
    for block in blocks:
        y = _gf_mul(y ^ block, hash_key)
    return y


def salamander(first: bytes, second: bytes, nonce: bytes, aad: bytes, payload: bytes) -> bytes:
    """One AES-GCM ciphertext || tag that opens under both keys (Dodis et al., CRYPTO 2018).

    It is ``payload`` under ``first`` plus one 16-byte block chosen so that
    the tags agree; under ``second`` the same bytes open to unrelated text.
    """
    assert len(payload) % 16 == 0 and len(nonce) == 12
    counter = nonce + (2).to_bytes(4, "big")
    encryptor = Cipher(algorithms.AES(first), modes.CTR(counter)).encryptor()
    body = encryptor.update(payload + bytes(16)) + encryptor.finalize()
    body = body[:-16] + bytes(16)  # the free block, zero for now
    length = ((len(aad) * 8) << 64) | (len(body) * 8)
    blocks = [*_blocks(aad), *_blocks(body), length]
    j0 = nonce + (1).to_bytes(4, "big")
    h1, h2 = _aes_block(first, bytes(16)), _aes_block(second, bytes(16))
    # tag_k = GHASH_Hk(blocks with the free block c) ^ E_k(J0); GHASH is linear in c,
    # whose coefficient is H^2 (it is followed only by the length block).
    difference = _ghash(h1, blocks) ^ _aes_block(first, j0) ^ _ghash(h2, blocks)
    difference ^= _aes_block(second, j0)
    coefficient = _gf_mul(h1, h1) ^ _gf_mul(h2, h2)
    free = _gf_mul(difference, _gf_pow(coefficient, 2**128 - 2))  # x^-1 = x^(2^128-2)
    body = body[:-16] + free.to_bytes(16, "big")
    blocks[-2] = free
    tag = _ghash(h1, blocks) ^ _aes_block(first, j0)
    return body + tag.to_bytes(16, "big")


def test_key_commitment_is_the_tagged_hash_of_the_content_key(party: Party) -> None:
    """The header commits to K: SHA-256(b"parley-envelope-v1 key commitment\\x00" || K)."""
    content_key = bytes(range(32))
    randomness = EnvelopeRandomness(
        content_key=content_key,
        payload_nonce=bytes(12),
        ephemeral_key=X25519PrivateKey.generate(),
        wrap_nonces={device_id: bytes(12) for device_id in party.devices},
    )
    header = parse_envelope(party.encrypt(randomness=randomness)).header
    expected = hashlib.sha256(b"parley-envelope-v1 key commitment\x00" + content_key).digest()
    assert header.key_commitment == key_commitment(content_key) == expected


def test_salamander_construction_opens_under_both_keys() -> None:
    """The test's multi-key ciphertext is real: AES-GCM alone accepts it under either key."""
    first, second, nonce = bytes(range(32)), bytes(range(32, 64)), bytes(12)
    payload = b'{"text":"meet at the station"}  '
    forged = salamander(first, second, nonce, b"header", payload)
    under_first = AESGCM(first).decrypt(nonce, forged, b"header")
    under_second = AESGCM(second).decrypt(nonce, forged, b"header")
    assert under_first[: len(payload)] == payload and under_second[: len(payload)] != payload


def _wrap(
    ephemeral: X25519PrivateKey, recipient: X25519PrivateKey, device_id: str, key: bytes, aad: bytes
) -> WrappedKey:
    recipient_key = raw(recipient)
    shared = ephemeral.exchange(recipient.public_key())
    wrap_key = derive_wrap_key(shared, raw(ephemeral), recipient_key, device_id)
    nonce = bytes(12)
    sealed = AESGCM(wrap_key).encrypt(nonce, key, aad + device_id.encode())
    return WrappedKey(device_id=device_id, nonce=nonce, wrapped_key=sealed)


def test_sender_wrapping_another_key_for_one_recipient_is_detected(party: Party) -> None:
    """A validly signed envelope whose one ciphertext opens under a second key, wrapped for
    one recipient only, is refused by that recipient before the payload is opened."""
    honest_key, other_key, nonce = bytes(range(32)), bytes(range(32, 64)), bytes(range(12))
    ephemeral = X25519PrivateKey.generate()
    randomness = EnvelopeRandomness(
        content_key=honest_key,
        payload_nonce=nonce,
        ephemeral_key=ephemeral,
        wrap_nonces={device_id: bytes(12) for device_id in party.devices},
    )
    parsed = parse_envelope(party.encrypt(randomness=randomness))
    aad = header_bytes(parsed.header)  # commits to honest_key
    payload = b'{"text":"meet at the station"}  '
    ciphertext = salamander(honest_key, other_key, nonce, aad, payload)
    victim = sorted(party.devices)[1]
    recipients = tuple(
        _wrap(
            ephemeral,
            party.devices[device_id],
            device_id,
            other_key if device_id == victim else honest_key,
            aad,
        )
        for device_id in sorted(party.devices)
    )
    forged = resign(
        dataclasses.replace(parsed, recipients=recipients, ciphertext=ciphertext),
        party.signing_key,
    )
    public = party.signing_key.public_key()
    verify_envelope(forged, public)  # the server cannot tell
    # Without the commitment check the victim would read different text.
    assert AESGCM(other_key).decrypt(nonce, ciphertext, aad) != AESGCM(honest_key).decrypt(
        nonce, ciphertext, aad
    )
    for device_id, key in party.devices.items():
        if device_id == victim:
            with pytest.raises(EnvelopeDecryptionError, match=r"^header\.key_commitment:") as info:
                decrypt_envelope(
                    forged, device_id=device_id, agreement_key=key, sender_signing_public=public
                )
            assert info.value.code == "undecryptable_envelope"
        else:
            opened = decrypt_envelope(
                forged, device_id=device_id, agreement_key=key, sender_signing_public=public
            )
            assert opened[: len(payload)] == payload


def test_commitment_to_another_key_is_detected_by_every_recipient(party: Party) -> None:
    """A header committing to another key than the one wrapped, re-signed, fails for everyone."""
    content_key, nonce, ephemeral = bytes(range(32)), bytes(range(12)), X25519PrivateKey.generate()
    randomness = EnvelopeRandomness(
        content_key=content_key,
        payload_nonce=nonce,
        ephemeral_key=ephemeral,
        wrap_nonces={device_id: bytes(12) for device_id in party.devices},
    )
    parsed = parse_envelope(party.encrypt(randomness=randomness))
    header = dataclasses.replace(parsed.header, key_commitment=key_commitment(bytes(32)))
    # The header is the AAD of both layers: rebuild them as a sender holding K would.
    aad = header_bytes(header)
    recipients = tuple(
        _wrap(ephemeral, party.devices[device_id], device_id, content_key, aad)
        for device_id in sorted(party.devices)
    )
    ciphertext = AESGCM(content_key).encrypt(nonce, b"hello", aad)
    forged = resign(
        dataclasses.replace(parsed, header=header, recipients=recipients, ciphertext=ciphertext),
        party.signing_key,
    )
    public = party.signing_key.public_key()
    for device_id, key in party.devices.items():
        with pytest.raises(EnvelopeDecryptionError, match=r"^header\.key_commitment:"):
            decrypt_envelope(
                forged, device_id=device_id, agreement_key=key, sender_signing_public=public
            )


# --- layouts ---------------------------------------------------------------------------------


def test_header_bytes_layout_is_exact(envelope: dict[str, Any]) -> None:
    """Header bytes are the tag, length-prefixed ids, 8-byte ms, content type and the key."""
    header = parse_envelope(envelope).header

    def prefixed(text: str) -> bytes:
        return len(text).to_bytes(4, "big") + text.encode()

    assert header_bytes(header) == (
        b"parley-envelope-v1 header\x00"
        + prefixed(CONVERSATION_ID)
        + prefixed(SENDER_USER_ID)
        + prefixed(SENDER_DEVICE_ID)
        + prefixed("m-1")
        + NOW_MS.to_bytes(8, "big")
        + prefixed("application/json")
        + header.ephemeral_key
        + header.key_commitment
    )


def test_signature_payload_layout_is_exact(envelope: dict[str, Any]) -> None:
    """The signed bytes are tag, header, count, sorted prefixed entries, nonce and ciphertext."""
    parsed = parse_envelope(envelope)
    entries = b"".join(
        b"\x00\x00\x00\x24"
        + entry.device_id.encode()
        + b"\x00\x00\x00\x0c"
        + entry.nonce
        + b"\x00\x00\x00\x30"
        + entry.wrapped_key
        for entry in parsed.recipients
    )
    assert signature_payload(parsed) == (
        b"parley-envelope-v1\x00"
        + header_bytes(parsed.header)
        + (3).to_bytes(4, "big")
        + entries
        + parsed.nonce
        + parsed.ciphertext
    )


# --- malformed input -------------------------------------------------------------------------


def _drop(*path: Any) -> Any:
    def change(data: dict[str, Any]) -> None:
        target: Any = data
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return change


def _key(u: int) -> str:
    return encode_b64url(u.to_bytes(32, "little"))


MALFORMED: list[tuple[str, Any, str]] = [
    ("missing header", _drop("header"), "^envelope: missing keys \\['header'\\]"),
    ("v is True", _set(("v",), True), "^v:"),
    ("v is text", _set(("v",), "1"), "^v:"),
    ("header not object", _set(("header",), []), "^header: not a JSON object"),
    ("header missing key", _drop("header", "content_type"), "^header: missing keys"),
    ("header extra key", _set(("header", "nonce"), "AAAA"), "^header: .*unknown keys"),
    (
        "uppercase uuid",
        _set(("header", "conversation_id"), CONVERSATION_ID.upper()),
        "^header.conversation_id",
    ),
    (
        "braced uuid",
        _set(("header", "sender_user_id"), "{" + SENDER_USER_ID + "}"),
        "^header.sender_user_id",
    ),
    (
        "uuid with newline",
        _set(("header", "sender_device_id"), SENDER_DEVICE_ID + "\n"),
        "^header.sender_device_id",
    ),
    ("client_msg_id empty", _set(("header", "client_msg_id"), ""), "^header.client_msg_id"),
    ("client_msg_id space", _set(("header", "client_msg_id"), "a b"), "^header.client_msg_id"),
    ("client_msg_id 65", _set(("header", "client_msg_id"), "a" * 65), "^header.client_msg_id"),
    (
        "client_msg_id surrogate",
        _set(("header", "client_msg_id"), "\ud800"),
        "^header.client_msg_id",
    ),
    ("created_at float", _set(("header", "created_at"), 1.0), "^header.created_at"),
    ("created_at bool", _set(("header", "created_at"), False), "^header.created_at"),
    ("created_at negative", _set(("header", "created_at"), -1), "^header.created_at"),
    ("created_at 2**53", _set(("header", "created_at"), 2**53), "^header.created_at"),
    ("content_type upper", _set(("header", "content_type"), "Text/Plain"), "^header.content_type"),
    (
        "content_type params",
        _set(("header", "content_type"), "text/plain; charset=utf-8"),
        "^header.content_type",
    ),
    ("content_type no slash", _set(("header", "content_type"), "text"), "^header.content_type"),
    ("ephemeral short", _set(("header", "ephemeral_key"), "AAAA"), "^header.ephemeral_key: not 32"),
    (
        "ephemeral padded",
        _set(("header", "ephemeral_key"), lambda t: t + "="),
        "^header.ephemeral_key",
    ),
    (
        "ephemeral non-canonical",
        _set(("header", "ephemeral_key"), _key(P + 9)),
        "not a canonical X25519",
    ),
    (
        "ephemeral top bit",
        _set(("header", "ephemeral_key"), _key(2**255 + 9)),
        "not a canonical X25519",
    ),
    *[
        (f"ephemeral small order {i}", _set(("header", "ephemeral_key"), _key(u)), "small-order")
        for i, u in enumerate(SMALL_ORDER_U)
    ],
    (
        "key_commitment missing",
        _drop("header", "key_commitment"),
        "^header: missing keys \\['key_commitment'\\]",
    ),
    (
        "key_commitment short",
        _set(("header", "key_commitment"), encode_b64url(bytes(31))),
        "^header.key_commitment: not 32",
    ),
    (
        "key_commitment padded",
        _set(("header", "key_commitment"), lambda t: t + "="),
        "^header.key_commitment",
    ),
    ("recipients empty", _set(("recipients",), []), "^recipients: not a list of 1..1000"),
    ("recipients object", _set(("recipients",), {}), "^recipients: not a list"),
    ("recipient not object", _set(("recipients", 1), "x"), "^recipients\\[1\\]: not a JSON object"),
    ("recipient extra key", _set(("recipients", 0, "key"), "x"), "^recipients\\[0\\]: .*unknown"),
    (
        "recipient bad id",
        _set(("recipients", 2, "device_id"), "me"),
        "^recipients\\[2\\].device_id",
    ),
    ("recipient id int", _set(("recipients", 2, "device_id"), 7), "^recipients\\[2\\].device_id"),
    (
        "recipient nonce size",
        _set(("recipients", 0, "nonce"), "AAAAAAAAAAAAAAAAAAAA"),
        "^recipients\\[0\\].nonce",
    ),
    (
        "wrapped key short",
        _set(("recipients", 1, "wrapped_key"), lambda t: t[:-4]),
        "^recipients\\[1\\].wrapped_key",
    ),
    (
        "wrapped key std alphabet",
        _set(("recipients", 1, "wrapped_key"), "+" * 64),
        "^recipients\\[1\\].wrapped_key",
    ),
    ("nonce null", _set(("nonce",), None), "^nonce"),
    (
        "ciphertext trailing bits",
        _set(("ciphertext",), "A" * 21 + "B"),
        "^ciphertext: not canonical",
    ),
    ("nonce impossible length", _set(("nonce",), "AAAAA"), "^nonce: not unpadded"),
    ("ciphertext empty", _set(("ciphertext",), ""), "^ciphertext: not 16..65552 bytes"),
    ("ciphertext 15 bytes", _set(("ciphertext",), encode_b64url(bytes(15))), "^ciphertext"),
    (
        "ciphertext too long",
        _set(("ciphertext",), encode_b64url(bytes(MAX_CIPHERTEXT_BYTES + 1))),
        "^ciphertext",
    ),
    ("signature 63 bytes", _set(("signature",), encode_b64url(bytes(63))), "^signature: not 64"),
]


@pytest.mark.parametrize(
    ("change", "match"), [(c, m) for _, c, m in MALFORMED], ids=[n for n, _, _ in MALFORMED]
)
def test_malformed_envelopes_name_the_field(
    party: Party, envelope: dict[str, Any], change: Any, match: str
) -> None:
    """Each malformed field is refused with invalid_envelope and a message naming it."""
    tampered = copy.deepcopy(envelope)
    change(tampered)
    with pytest.raises(EnvelopeError, match=match) as info:
        verify_envelope(tampered, party.signing_key.public_key())
    assert type(info.value) is EnvelopeError


@pytest.mark.parametrize("value", [None, [], "envelope", 1, {"v": 1}])
def test_non_envelopes_are_refused(value: Any) -> None:
    """Values that are not envelope objects are invalid_envelope, not a crash."""
    with pytest.raises(EnvelopeError, match=r"^envelope"):
        parse_envelope(value)


def test_too_many_recipients_is_refused(envelope: dict[str, Any]) -> None:
    """More than MAX_RECIPIENTS entries are refused before any entry is decoded."""
    tampered = dict(envelope, recipients=[{}] * (MAX_RECIPIENTS + 1))
    with pytest.raises(EnvelopeError, match=r"^recipients: not a list of 1\.\.1000"):
        parse_envelope(tampered)


def test_small_order_list_is_what_openssl_refuses() -> None:
    """Every blocklisted u-coordinate makes X25519 give the all-zero secret."""
    for u in SMALL_ORDER_U:
        with pytest.raises(ValueError):
            X25519PrivateKey.generate().exchange(
                X25519PublicKey.from_public_bytes(u.to_bytes(32, "little"))
            )


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"payload": b"x" * (MAX_PAYLOAD_BYTES + 1)}, "payload"),
        ({"payload": "text"}, "payload"),
        ({"recipients": {}}, "recipients"),
        ({"recipients": {"Device-1": X25519PrivateKey.generate().public_key()}}, "recipients"),
        (
            {"recipients": {new_id(): X25519PublicKey.from_public_bytes(bytes(32))}},
            "small-order",
        ),
        ({"conversation_id": "c1"}, "conversation_id"),
        ({"client_msg_id": "a b"}, "client_msg_id"),
        ({"created_at": 1.5}, "created_at"),
        ({"content_type": "TEXT"}, "content_type"),
    ],
)
def test_encrypt_rejects_bad_arguments(party: Party, change: dict[str, Any], match: str) -> None:
    """Bad encrypt_envelope arguments raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=match):
        party.encrypt(**change)


def test_encrypt_rejects_too_many_recipients(party: Party) -> None:
    """More than MAX_RECIPIENTS devices is a ValueError (keys are not even looked at)."""
    key = X25519PrivateKey.generate().public_key()
    with pytest.raises(ValueError, match="recipients"):
        party.encrypt(recipients={new_id(): key for _ in range(MAX_RECIPIENTS + 1)})


FUZZ_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    1,
    2**64,
    1.5,
    "",
    "A",
    "AAAA",
    "\ud800",
    "é",
    "A" * 100_000,
    [],
    {},
    [{}],
    {"v": 1},
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _mutate(rng: random.Random, data: Any) -> None:
    path = rng.choice(_paths(data))
    parent: Any = data
    for part in path[:-1]:
        parent = parent[part]
    old, roll = parent[path[-1]], rng.random()
    if roll < 0.15 and isinstance(parent, dict):
        del parent[path[-1]]
    elif roll < 0.5 and isinstance(old, str) and old:
        chars = list(old)
        chars[rng.randrange(len(chars))] = rng.choice("Aa0_-+/=é\x00")
        parent[path[-1]] = "".join(chars[: rng.choice([len(chars), rng.randrange(len(chars))])])
    elif roll < 0.6 and isinstance(parent, list):
        parent.insert(rng.randrange(len(parent) + 1), copy.deepcopy(rng.choice(parent)))
    else:
        parent[path[-1]] = copy.deepcopy(rng.choice(FUZZ_VALUES))


def test_fuzzed_envelopes_raise_only_envelope_errors(
    party: Party, envelope: dict[str, Any]
) -> None:
    """Thousands of random mutations raise nothing but Parley errors from verify and decrypt."""
    rng = random.Random(20250101)
    public = party.signing_key.public_key()
    device_id, key = next(iter(party.devices.items()))
    refused = 0
    for _ in range(3000):
        tampered = copy.deepcopy(envelope)
        for _ in range(rng.randint(1, 3)):
            if _paths(tampered):
                _mutate(rng, tampered)
        try:
            opened = decrypt_envelope(
                tampered, device_id=device_id, agreement_key=key, sender_signing_public=public
            )
        except ParleyError:
            refused += 1
        else:  # a mutation that changed nothing (a character replaced by itself)
            assert tampered == envelope and opened == b'{"text":"hello"}'
    assert refused > 2900


# --- test vectors ----------------------------------------------------------------------------


def _seed(label: str) -> bytes:
    return hashlib.sha256(b"parley-envelope-v1 test vector: " + label.encode()).digest()


def _vector_inputs(
    name: str, content_type: str, payload: bytes, recipients: list[str]
) -> dict[str, Any]:
    return {
        "sender_signing_private_key": _seed(f"{name} sender signing key").hex(),
        "conversation_id": CONVERSATION_ID,
        "sender_user_id": SENDER_USER_ID,
        "sender_device_id": SENDER_DEVICE_ID,
        "client_msg_id": f"vector-{name}",
        "created_at": NOW_MS,
        "content_type": content_type,
        "payload": payload.hex(),
        "content_key": _seed(f"{name} content key").hex(),
        "payload_nonce": _seed(f"{name} payload nonce")[:12].hex(),
        "ephemeral_private_key": _seed(f"{name} ephemeral key").hex(),
        "recipients": [
            {
                "device_id": device_id,
                "agreement_private_key": _seed(f"{name} agreement key {device_id}").hex(),
                "wrap_nonce": _seed(f"{name} wrap nonce {device_id}")[:12].hex(),
            }
            for device_id in recipients
        ],
    }


def compute_vector(inputs: dict[str, Any]) -> dict[str, Any]:
    """Everything a vector's inputs determine: intermediate values and the wire envelope."""
    signing_key = Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex(inputs["sender_signing_private_key"])
    )
    ephemeral = X25519PrivateKey.from_private_bytes(bytes.fromhex(inputs["ephemeral_private_key"]))
    agreement = {
        entry["device_id"]: X25519PrivateKey.from_private_bytes(
            bytes.fromhex(entry["agreement_private_key"])
        )
        for entry in inputs["recipients"]
    }
    envelope = encrypt_envelope(
        payload=bytes.fromhex(inputs["payload"]),
        conversation_id=inputs["conversation_id"],
        sender_user_id=inputs["sender_user_id"],
        sender_device_id=inputs["sender_device_id"],
        client_msg_id=inputs["client_msg_id"],
        created_at=inputs["created_at"],
        content_type=inputs["content_type"],
        sender_signing_key=signing_key,
        recipients={device_id: key.public_key() for device_id, key in agreement.items()},
        randomness=EnvelopeRandomness(
            content_key=bytes.fromhex(inputs["content_key"]),
            payload_nonce=bytes.fromhex(inputs["payload_nonce"]),
            ephemeral_key=ephemeral,
            wrap_nonces={
                entry["device_id"]: bytes.fromhex(entry["wrap_nonce"])
                for entry in inputs["recipients"]
            },
        ),
    )
    parsed = parse_envelope(envelope)
    header = header_bytes(parsed.header)
    wraps = []
    for device_id in sorted(agreement):
        recipient_key = raw(agreement[device_id])
        shared = ephemeral.exchange(agreement[device_id].public_key())
        wraps.append(
            {
                "device_id": device_id,
                "agreement_public_key": recipient_key.hex(),
                "shared_secret": shared.hex(),
                "hkdf_salt": (raw(ephemeral) + recipient_key).hex(),
                "hkdf_info": (b"parley-envelope-v1 wrap" + device_id.encode()).hex(),
                "wrap_key": derive_wrap_key(shared, raw(ephemeral), recipient_key, device_id).hex(),
                "wrap_aad": (header + device_id.encode()).hex(),
            }
        )
    return {
        "intermediate": {
            "sender_signing_public_key": raw(signing_key).hex(),
            "ephemeral_public_key": raw(ephemeral).hex(),
            "key_commitment": key_commitment(bytes.fromhex(inputs["content_key"])).hex(),
            "header_bytes": header.hex(),
            "recipients": wraps,
            "signature_payload": signature_payload(parsed).hex(),
        },
        "envelope": envelope,
    }


def build_vectors() -> dict[str, Any]:
    """The vector file's content, from fixed inputs (keys and randomness are SHA-256 of labels)."""
    specs = [
        _vector_inputs("one", "text/plain", "héllo, Parley 👋".encode(), [new_uuid("one", 1)]),
        _vector_inputs(
            "three",
            "application/json",
            json.dumps({"text": "see you at 8"}, separators=(",", ":")).encode(),
            # Given out of order: the envelope lists them ascending.
            [new_uuid("three", 3), new_uuid("three", 1), SENDER_OTHER_DEVICE_ID],
        ),
    ]
    return {
        "format": "parley-envelope-v1",
        "spec": "docs/PROTOCOL.md, section 'Envelope (parley-envelope-v1)'",
        "encoding": (
            "inputs and intermediate: byte strings as lowercase hex (private keys are the raw "
            "32 bytes: the Ed25519 seed, the X25519 scalar before clamping); envelope: the wire "
            "form, byte strings as unpadded base64url. Ed25519 signatures are deterministic, so "
            "an implementation given the inputs must reproduce every value exactly."
        ),
        "vectors": [
            {"name": spec["client_msg_id"], "inputs": spec, **compute_vector(spec)}
            for spec in specs
        ],
    }


def new_uuid(name: str, index: int) -> str:
    return str(uuid.UUID(bytes=_seed(f"{name} device {index}")[:16], version=4))


def render_vectors(vectors: dict[str, Any]) -> str:
    return json.dumps(vectors, indent=2, ensure_ascii=False) + "\n"


STORED_VECTORS: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))[
    "vectors"
]


def test_vector_file_is_what_the_fixed_inputs_give() -> None:
    """envelope_vectors.json is byte for byte what build_vectors() renders."""
    assert VECTORS_PATH.read_text(encoding="utf-8") == render_vectors(build_vectors())


@pytest.mark.parametrize("vector", STORED_VECTORS, ids=[v["name"] for v in STORED_VECTORS])
def test_vector_recomputes_byte_for_byte(vector: dict[str, Any]) -> None:
    """From the stored inputs, every intermediate value and the wire envelope come out identical."""
    computed = compute_vector(vector["inputs"])
    assert computed["intermediate"] == vector["intermediate"]
    assert json.dumps(computed["envelope"]) == json.dumps(vector["envelope"])


@pytest.mark.parametrize("vector", STORED_VECTORS, ids=[v["name"] for v in STORED_VECTORS])
def test_vector_decrypts_for_each_recipient(vector: dict[str, Any]) -> None:
    """The stored envelope verifies and each listed device decrypts it to the stored payload."""
    inputs = vector["inputs"]
    sender = Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex(inputs["sender_signing_private_key"])
    )
    verify_envelope(vector["envelope"], sender.public_key())
    for entry in inputs["recipients"]:
        key = X25519PrivateKey.from_private_bytes(bytes.fromhex(entry["agreement_private_key"]))
        opened = decrypt_envelope(
            vector["envelope"],
            device_id=entry["device_id"],
            agreement_key=key,
            sender_signing_public=sender.public_key(),
        )
        assert opened == bytes.fromhex(inputs["payload"])


def test_wrapped_key_entries_match_the_intermediates() -> None:
    """Each stored wrapped key is AES-GCM of the content key under the stored wrap key and AAD."""
    for vector in STORED_VECTORS:
        parsed = parse_envelope(vector["envelope"])
        commitment = hashlib.sha256(
            b"parley-envelope-v1 key commitment\x00"
            + bytes.fromhex(vector["inputs"]["content_key"])
        ).digest()
        assert vector["intermediate"]["key_commitment"] == commitment.hex()
        assert parsed.header.key_commitment == commitment
        for wrap, entry in zip(
            vector["intermediate"]["recipients"], parsed.recipients, strict=True
        ):
            assert isinstance(entry, WrappedKey) and entry.device_id == wrap["device_id"]
            opened = AESGCM(bytes.fromhex(wrap["wrap_key"])).decrypt(
                entry.nonce, entry.wrapped_key, bytes.fromhex(wrap["wrap_aad"])
            )
            assert opened.hex() == vector["inputs"]["content_key"]


def test_large_recipient_lists_parse_in_bulk_to_the_same_entries() -> None:
    """Recipients are parsed in bulk; the result is what parsing entry by entry gives."""
    from crypto.envelope import _recipients, _well_formed_recipients

    big = make_party(60).encrypt()
    bulk = _well_formed_recipients(big["recipients"])
    assert bulk is not None and bulk == _recipients(big["recipients"])
    assert parse_envelope(big).recipients == tuple(bulk)
    assert [e.to_dict() for e in bulk] == big["recipients"]


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("nonce", "+" + "A" * 15, "^recipients\\[47\\].nonce: not unpadded base64url"),
        ("nonce", "A" * 15 + "=", "^recipients\\[47\\].nonce"),
        ("wrapped_key", "A" * 63 + "/", "^recipients\\[47\\].wrapped_key"),
        ("wrapped_key", "A" * 68, "^recipients\\[47\\].wrapped_key: not unpadded base64url of"),
        ("device_id", SENDER_DEVICE_ID.upper(), "^recipients\\[47\\].device_id"),
    ],
)
def test_a_bad_entry_deep_in_a_large_list_is_named(field: str, value: str, match: str) -> None:
    """The bulk parse gives up on anything unusual; the entry-by-entry parse names it."""
    big = make_party(60).encrypt()
    big["recipients"][47][field] = value
    with pytest.raises(EnvelopeError, match=match):
        parse_envelope(big)


@pytest.mark.parametrize("name", list(SIGNATURE_BREAKING))
def test_the_servers_libsodium_check_refuses_what_openssl_refuses(
    party: Party, envelope: dict[str, Any], name: str
) -> None:
    """``verify_envelope_with_raw_key`` (libsodium, the server's send path) agrees with
    ``verify_envelope`` (OpenSSL): the intact envelope passes, every tampering fails."""
    from crypto.envelope import verify_envelope_with_raw_key

    raw_key = raw(party.signing_key)
    verify_envelope_with_raw_key(parse_envelope(envelope), raw_key)
    tampered = copy.deepcopy(envelope)
    SIGNATURE_BREAKING[name](tampered)
    with pytest.raises(EnvelopeSignatureError, match=r"^signature:"):
        verify_envelope_with_raw_key(parse_envelope(tampered), raw_key)
    other = raw(Ed25519PrivateKey.generate())
    with pytest.raises(EnvelopeSignatureError):
        verify_envelope_with_raw_key(parse_envelope(envelope), other)


if __name__ == "__main__":
    VECTORS_PATH.write_text(render_vectors(build_vectors()), encoding="utf-8")
