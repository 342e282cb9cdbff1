"""Encrypted attachments (``parley-attachment-v1``): a blob opens only with its key and hash."""

from __future__ import annotations

import hashlib
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.attachments import (
    KEY_BYTES,
    NONCE_BYTES,
    TAG_BYTES,
    AttachmentError,
    AttachmentSecret,
    decrypt_attachment,
    encrypt_attachment,
)

PLAINTEXT = b"\xff\xd8\xff\xe0 a photo, or any file " + os.urandom(4096)


def test_round_trip_gives_the_plaintext_back() -> None:
    """What encrypt_attachment makes, decrypt_attachment opens to the same bytes."""
    blob, secret = encrypt_attachment(PLAINTEXT)
    assert decrypt_attachment(blob, secret) == PLAINTEXT


@pytest.mark.parametrize("plaintext", [b"", b"x", os.urandom(1024 * 1024 + 3)], ids=len)
def test_round_trip_at_any_size(plaintext: bytes) -> None:
    """Empty, one byte and over a MiB all round-trip; the blob is nonce + ciphertext + tag."""
    blob, secret = encrypt_attachment(plaintext)
    assert len(blob) == NONCE_BYTES + len(plaintext) + TAG_BYTES
    assert decrypt_attachment(blob, secret) == plaintext


def test_blob_layout_and_secret_follow_the_spec() -> None:
    """blob = nonce || AES-256-GCM(key, nonce, plaintext, aad); sha256 is of the whole blob."""
    blob, secret = encrypt_attachment(PLAINTEXT)
    assert len(secret.key) == KEY_BYTES
    assert secret.sha256 == hashlib.sha256(blob).digest()
    nonce, sealed = blob[:NONCE_BYTES], blob[NONCE_BYTES:]
    assert AESGCM(secret.key).decrypt(nonce, sealed, b"parley-attachment-v1") == PLAINTEXT
    assert PLAINTEXT[:64] not in blob


def test_two_encryptions_of_the_same_file_differ() -> None:
    """Fresh key and nonce every time: equal plaintexts give unrelated blobs and keys."""
    first_blob, first = encrypt_attachment(PLAINTEXT)
    second_blob, second = encrypt_attachment(PLAINTEXT)
    assert first_blob != second_blob
    assert first_blob[:NONCE_BYTES] != second_blob[:NONCE_BYTES]
    assert first.key != second.key and first.sha256 != second.sha256


def test_wrong_key_is_refused() -> None:
    """The right blob and hash with another key: AttachmentError, not garbage."""
    blob, secret = encrypt_attachment(PLAINTEXT)
    wrong = AttachmentSecret(os.urandom(KEY_BYTES), secret.sha256)
    with pytest.raises(AttachmentError, match="does not decrypt"):
        decrypt_attachment(blob, wrong)


@pytest.mark.parametrize("position", [0, NONCE_BYTES, NONCE_BYTES + 100, -1])
def test_flipped_byte_is_refused(position: int) -> None:
    """One flipped bit anywhere (nonce, ciphertext, tag) fails the hash check."""
    blob, secret = encrypt_attachment(PLAINTEXT)
    tampered = bytearray(blob)
    tampered[position] ^= 0x01
    with pytest.raises(AttachmentError, match="SHA-256"):
        decrypt_attachment(bytes(tampered), secret)


def test_flipped_byte_with_a_matching_hash_still_fails_authentication() -> None:
    """Whoever also rewrites the hash in the envelope still cannot get past AES-GCM's tag."""
    blob, secret = encrypt_attachment(PLAINTEXT)
    tampered = bytearray(blob)
    tampered[NONCE_BYTES + 5] ^= 0x80
    forged = AttachmentSecret(secret.key, hashlib.sha256(bytes(tampered)).digest())
    with pytest.raises(AttachmentError, match="does not decrypt"):
        decrypt_attachment(bytes(tampered), forged)


def test_swapped_blob_is_refused() -> None:
    """Another attachment's blob under this one's secret: the SHA-256 does not match."""
    blob, secret = encrypt_attachment(PLAINTEXT)
    other_blob, other = encrypt_attachment(PLAINTEXT)
    with pytest.raises(AttachmentError, match="SHA-256"):
        decrypt_attachment(other_blob, secret)
    # Even the other blob with this key and its own hash does not open.
    with pytest.raises(AttachmentError):
        decrypt_attachment(other_blob, AttachmentSecret(secret.key, other.sha256))
    assert decrypt_attachment(blob, secret) == PLAINTEXT


@pytest.mark.parametrize("length", [0, 1, NONCE_BYTES, NONCE_BYTES + TAG_BYTES - 1])
def test_short_blob_is_refused(length: int) -> None:
    """A blob too short for nonce and tag is an AttachmentError, even with a matching hash."""
    blob, secret = encrypt_attachment(PLAINTEXT)
    short = blob[:length]
    with pytest.raises(AttachmentError):
        decrypt_attachment(short, secret)
    matching = AttachmentSecret(secret.key, hashlib.sha256(short).digest())
    with pytest.raises(AttachmentError, match="too short"):
        decrypt_attachment(short, matching)


@pytest.mark.parametrize("key_length", [0, 16, 31, 33])
def test_key_of_the_wrong_length_is_refused(key_length: int) -> None:
    """Only 32-byte keys: a short or long key is an AttachmentError, not a library error."""
    blob, secret = encrypt_attachment(PLAINTEXT)
    with pytest.raises(AttachmentError, match="32 bytes"):
        decrypt_attachment(blob, AttachmentSecret(os.urandom(key_length), secret.sha256))
