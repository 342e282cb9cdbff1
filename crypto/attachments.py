"""Encrypted attachments (``parley-attachment-v1``), docs/PROTOCOL.md.

A file sent in an encrypted conversation is encrypted on the device with a
fresh random AES-256-GCM key and uploaded as an opaque blob; the key and the
SHA-256 of the ciphertext travel inside the message envelope, so the server
holds bytes it cannot read and the recipient can tell if they were swapped.

    blob = nonce (12 bytes) || AES-256-GCM(key, nonce, plaintext, aad="parley-attachment-v1")

A key encrypts exactly one attachment, so a random nonce is safe.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "parley-attachment-v1"
_AAD = VERSION.encode()
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


class AttachmentError(ValueError):
    """The blob is not the one the envelope describes, or it was tampered with."""


@dataclass(frozen=True, slots=True)
class AttachmentSecret:
    key: bytes
    sha256: bytes  # of the blob (ciphertext), checked before decrypting


def encrypt_attachment(plaintext: bytes) -> tuple[bytes, AttachmentSecret]:
    """The blob to upload and what the envelope must carry to open it."""
    key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_BYTES)
    blob = nonce + AESGCM(key).encrypt(nonce, plaintext, _AAD)
    return blob, AttachmentSecret(key, hashlib.sha256(blob).digest())


def decrypt_attachment(blob: bytes, secret: AttachmentSecret) -> bytes:
    if len(secret.key) != KEY_BYTES:
        raise AttachmentError("attachment key must be 32 bytes")
    if not hmac.compare_digest(hashlib.sha256(blob).digest(), secret.sha256):
        raise AttachmentError("blob does not match the SHA-256 in the envelope")
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise AttachmentError("blob is too short to be an attachment")
    try:
        return AESGCM(secret.key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _AAD)
    except InvalidTag:
        raise AttachmentError("attachment does not decrypt with its key") from None
