"""Device keys and the proof that a device holds its signing key (seed 000, ARCHITECTURE.md 4, 6).

A device makes its own Ed25519 signing key and X25519 agreement key and
uploads only the public halves. To show it holds the signing key, it signs
(``parley-device-proof-v1``)::

    b"parley-device-proof-v1\\x00"   23 bytes, domain separation
    user_id_utf8                     the account's id as the server gave it (no NUL)
    b"\\x00"
    signing_key                      32 bytes, raw Ed25519 public key (RFC 8032)
    agreement_key                    32 bytes, raw X25519 public key (RFC 7748)

``proof`` is the 64-byte Ed25519 signature of those bytes by ``signing_key``.
The user id binds the proof to one account, so a proof seen by someone else
cannot register that key to another account; the agreement key is inside, so
the signing key vouches for it. The tag keeps the signature from being valid
for any envelope or other message the same key signs. The keys have a fixed
size and the id ends at the NUL, so the layout is unambiguous.

Failures are ``InvalidRequestError`` subclasses (422), not 401: the caller's
access token is fine, and a 401 would tell a client to sign in again when it
should fix the body instead.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from nacl.bindings import crypto_core_ed25519_is_valid_point

from config.errors import InvalidRequestError

PROOF_TAG: Final = b"parley-device-proof-v1\x00"
KEY_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
X25519_P: Final = 2**255 - 19  # the field prime of Curve25519
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class InvalidDeviceProofError(InvalidRequestError):
    code = "invalid_proof"


class InvalidDeviceKeyError(InvalidRequestError):
    code = "invalid_key"


def encode_b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 4648 section 5), the form keys travel in."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode_b64url(text: str, length: int) -> bytes:
    """Strict unpadded base64url of exactly ``length`` bytes; raises ``ValueError``.

    Only the canonical encoding is accepted (re-encoding gives the same text),
    so one key has one text form and the unique index on it means what it says.
    """
    if len(text) > 2 * length + 4 or not _B64URL.fullmatch(text):
        raise ValueError("not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not unpadded base64url") from None
    if encode_b64url(data) != text:
        raise ValueError("not canonical base64url")
    if len(data) != length:
        raise ValueError(f"not {length} bytes")
    return data


def device_proof_payload(user_id: str, signing_key: bytes, agreement_key: bytes) -> bytes:
    """The bytes a device signs to prove it holds ``signing_key`` (layout above).

    Raises ``ValueError`` for an empty user id, one containing NUL, or keys
    that are not 32 bytes (any of these would make the layout ambiguous).
    """
    if not user_id or "\x00" in user_id:
        raise ValueError("user_id: empty or contains NUL")
    if len(signing_key) != KEY_BYTES or len(agreement_key) != KEY_BYTES:
        raise ValueError(f"keys must be {KEY_BYTES} bytes")
    return PROOF_TAG + user_id.encode("utf-8") + b"\x00" + signing_key + agreement_key


def check_signing_key(signing_key: bytes) -> Ed25519PublicKey:
    """The Ed25519 key, if it is a usable public key; raises ``InvalidDeviceKeyError``.

    cryptography's ``from_public_bytes`` checks only the length, and OpenSSL
    accepts the identity point, for which ``R = identity, s = 0`` verifies
    every message. libsodium's ``crypto_core_ed25519_is_valid_point`` refuses
    non-canonical encodings, points off the curve, and small- or mixed-order
    points, so a key that passes has a private key behind it (or nobody's).
    """
    if len(signing_key) != KEY_BYTES:
        raise InvalidDeviceKeyError(f"signing_key: not {KEY_BYTES} bytes")
    if not crypto_core_ed25519_is_valid_point(signing_key):
        raise InvalidDeviceKeyError("signing_key: not a valid Ed25519 public key")
    return Ed25519PublicKey.from_public_bytes(signing_key)


def is_canonical_x25519(key: bytes) -> bool:
    """Whether ``key`` is the canonical 32-byte encoding of an X25519 u-coordinate.

    X25519 ignores the top bit and reduces u mod p (RFC 7748 section 5), so
    a key with the top bit set, or with u in p..2**255-1, is another encoding
    of a smaller key. Canonical: top bit clear and u < p = 2**255 - 19, i.e.
    re-encoding the decoded value gives the same 32 bytes. WebCrypto and
    OpenSSL only ever emit canonical keys.
    """
    return len(key) == KEY_BYTES and int.from_bytes(key, "little") < X25519_P


def check_agreement_key(agreement_key: bytes) -> X25519PublicKey:
    """The X25519 key, if it is usable; raises ``InvalidDeviceKeyError``.

    Only canonical encodings (``is_canonical_x25519``), the rule
    ``crypto.envelope`` applies to every key it wraps for: an envelope's HKDF
    salt holds the recipient's raw key bytes, which the sender takes from the
    registry and the recipient re-encodes from its own private key, so the
    registered bytes must be the one encoding both sides produce.

    A small-order key makes every shared secret all zeros (RFC 7748 section
    6.1), so content keys wrapped for it would be readable by anyone; an
    exchange with a throwaway key finds those (OpenSSL refuses the all-zero
    result).
    """
    if len(agreement_key) != KEY_BYTES:
        raise InvalidDeviceKeyError(f"agreement_key: not {KEY_BYTES} bytes")
    if not is_canonical_x25519(agreement_key):
        raise InvalidDeviceKeyError("agreement_key: not a canonical X25519 public key")
    public = X25519PublicKey.from_public_bytes(agreement_key)
    try:
        X25519PrivateKey.generate().exchange(public)
    except ValueError:
        raise InvalidDeviceKeyError("agreement_key: a small-order X25519 key") from None
    return public


def verify_device_proof(
    user_id: str, signing_key: bytes, agreement_key: bytes, proof: bytes
) -> None:
    """Check both keys and that ``proof`` is ``signing_key``'s signature of the payload.

    Raises ``InvalidDeviceKeyError`` (code ``invalid_key``) for an unusable key
    and ``InvalidDeviceProofError`` (code ``invalid_proof``) for a bad proof,
    both 422.
    """
    public = check_signing_key(signing_key)
    check_agreement_key(agreement_key)
    if len(proof) != SIGNATURE_BYTES:
        raise InvalidDeviceProofError(f"proof: not {SIGNATURE_BYTES} bytes")
    try:
        payload = device_proof_payload(user_id, signing_key, agreement_key)
    except ValueError as exc:
        raise InvalidDeviceProofError(f"proof: {exc}") from None
    try:
        public.verify(proof, payload)
    except InvalidSignature:
        raise InvalidDeviceProofError(
            "proof: not signing_key's signature of this account's device proof"
        ) from None
