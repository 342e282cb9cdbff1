"""End-to-end-encrypted message envelopes, ``parley-envelope-v1`` (ARCHITECTURE.md section 6).

Only primitives every browser has in WebCrypto: X25519 (RFC 7748), Ed25519
(RFC 8032), HKDF-SHA256 (RFC 5869) and AES-256-GCM (NIST SP 800-38D). The
server checks structure, sizes and the sender's signature (``verify_envelope``)
and stores the envelope opaque; only recipient devices decrypt
(``decrypt_envelope``). docs/PROTOCOL.md specifies the format for other
implementations; tests/unit/envelope_vectors.json holds its test vectors.

Encryption. A random 32-byte content key ``K`` and 12-byte nonce ``N``::

    key_commitment = SHA-256(b"parley-envelope-v1 key commitment\\x00" || K)   # in the header
    ciphertext     = AES-256-GCM(K, N, payload, aad=header_bytes)     # ct || 16-byte tag

One ephemeral X25519 key pair ``(e, E)`` per envelope, shared by all its
recipients; for each recipient device ``d`` with agreement key ``R_d``::

    shared_d   = X25519(e, R_d)
    wrap_key_d = HKDF-SHA256(ikm=shared_d, salt=E || R_d,
                             info=b"parley-envelope-v1 wrap" || d, length=32)
    wrapped_d  = AES-256-GCM(wrap_key_d, n_d, K, aad=header_bytes || d)   # 48 bytes

where ``d`` is the device id's 36 ASCII bytes and ``n_d`` a random 12-byte nonce.

- One ephemeral key for all recipients: every recipient reads the same
  payload anyway, so a key per recipient would protect nothing more and cost
  32 bytes per recipient. The wrap keys still differ per recipient (their
  agreement keys differ, and both the salt and the info name the recipient).
  The ephemeral private key is discarded after wrapping and never reused.
- ``E || R_d`` in the salt (as HPKE's ``kem_context``, RFC 9180 section 4.1)
  binds the wrap key to the exact pair of public keys, not only to the shared
  point: several public keys give the same X25519 secret (another encoding
  of the same u, or the key plus a small-order point, which the clamped
  scalar cancels), and a secret alone says nothing about whom it was agreed
  with. With both keys in the KDF, a wrap made for one key cannot be
  presented as made for another that happens to share the secret.
- ``d`` in the info and the AAD binds each wrapped key to its label, so the
  recipient list cannot be relabelled (an entry moved to another device id, or
  one agreement key registered under two ids) without the wrap failing to
  open, independently of the signature.
- The header (with ``E`` and ``key_commitment``) is the AAD of both layers,
  so no header field can be changed without every decryption failing.
- ``key_commitment`` makes every recipient read the same payload. AES-GCM
  does not commit to its key: a malicious *sender* could wrap different
  content keys for different recipients and craft one ciphertext whose tag
  verifies under each of them, opening to a different payload for each
  ("invisible salamanders"; the signature proves who sent the envelope, not
  that all recipients read the same text). ``decrypt_envelope`` therefore
  checks, after unwrapping ``K`` and before opening the payload, that
  ``K`` hashes to the header's commitment. Committing to the key is enough
  here because everything else AES-GCM decryption depends on is already
  fixed for all recipients by the signature: ``N``, the ciphertext and the
  AAD (the header, commitment included). Decryption is a function of
  (key, nonce, AAD, ciphertext), so recipients whose keys pass the check
  hold equal keys (two keys with one commitment would be a SHA-256
  collision) and get the same payload, or all the same tag failure. The
  commitment reveals nothing useful about ``K`` (a uniformly random 256-bit
  value behind a preimage-resistant hash); the tag keeps it apart from any
  other hash of the key.

``header_bytes`` (every field fixed-size or length-prefixed; lengths are
unsigned 32-bit big-endian)::

    b"parley-envelope-v1 header\\x00"   26 bytes (the version is in the tag)
    len || conversation_id            36 bytes, canonical lowercase UUID text
    len || sender_user_id             36 bytes, canonical lowercase UUID text
    len || sender_device_id           36 bytes, canonical lowercase UUID text
    len || client_msg_id              1..64 bytes of A-Z a-z 0-9 _ . : -
    created_at                        unsigned 64-bit big-endian, Unix ms, < 2**53
    len || content_type               1..127 bytes, lowercase "type/subtype"
    ephemeral_key                     32 bytes, raw X25519 public key E
    key_commitment                    32 bytes, SHA-256(KEY_COMMITMENT_TAG || K)

The sender device signs with its Ed25519 key (``signature_payload``)::

    b"parley-envelope-v1\\x00"          19 bytes, domain separation
    header_bytes
    count                             unsigned 32-bit big-endian, 1..1000
    per recipient, ascending by device id bytes:
        len || device_id              36 bytes
        len || wrap nonce             12 bytes
        len || wrapped key            48 bytes
    nonce                             12 bytes
    ciphertext                        the rest, 16..65552 bytes

The count keeps a recipient entry from being read as the start of the nonce
and ciphertext. The wire list must already be in that order (no duplicates),
so one envelope has exactly one JSON form and reordering is an error rather
than an equivalent variant.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nacl.bindings import crypto_sign_open
from nacl.exceptions import CryptoError

from config.errors import InvalidRequestError
from crypto.devices import X25519_P, encode_b64url, is_canonical_x25519

ENVELOPE_VERSION: Final = 1
SIGNATURE_TAG: Final = b"parley-envelope-v1\x00"
HEADER_TAG: Final = b"parley-envelope-v1 header\x00"
WRAP_INFO_PREFIX: Final = b"parley-envelope-v1 wrap"
KEY_COMMITMENT_TAG: Final = b"parley-envelope-v1 key commitment\x00"

KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
GCM_TAG_BYTES: Final = 16
WRAPPED_KEY_BYTES: Final = KEY_BYTES + GCM_TAG_BYTES
SIGNATURE_BYTES: Final = 64
MAX_RECIPIENTS: Final = 1_000
MAX_PAYLOAD_BYTES: Final = 64 * 1024
MAX_CIPHERTEXT_BYTES: Final = MAX_PAYLOAD_BYTES + GCM_TAG_BYTES
MAX_CLIENT_MSG_ID_BYTES: Final = 64
MAX_CONTENT_TYPE_BYTES: Final = 127
MAX_TIMESTAMP: Final = 2**53 - 1  # exact in a JSON number / JavaScript double

_ENVELOPE_KEYS: Final = frozenset({"v", "header", "recipients", "nonce", "ciphertext", "signature"})
_HEADER_KEYS: Final = frozenset(
    {
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
)
_RECIPIENT_KEYS: Final = frozenset({"device_id", "nonce", "wrapped_key"})
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
# Lowercase only, so one id has one text form (str(uuid.UUID) and crypto.randomUUID()).
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CLIENT_MSG_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # as server/chats/schemas.ClientMsgId
# RFC 6838 section 4.2 restricted names, lowercased, without parameters.
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}")
# The canonical u-coordinates of the small-order points of Curve25519 (as
# libsodium's blocklist): X25519 with any of them gives an all-zero secret.
_SMALL_ORDER_U: Final = frozenset(
    {
        0,
        1,
        X25519_P - 1,
        325606250916557431795983626356110631294008115727848805560023387167927233504,
        39382357235489614581723060781553021112529911719440698176882885853963445705823,
    }
)


class EnvelopeError(InvalidRequestError):
    """The envelope is malformed or breaks a limit; the message names the field."""

    code = "invalid_envelope"


class EnvelopeSignatureError(EnvelopeError):
    """The signature is not the sender device's over this envelope (422: the session is fine)."""

    code = "invalid_signature"


class EnvelopeDecryptionError(InvalidRequestError):
    """A correctly signed envelope that this device cannot open."""

    code = "undecryptable_envelope"


class EnvelopeNotRecipientError(EnvelopeDecryptionError):
    """The envelope has no wrapped key for this device."""

    code = "not_a_recipient"


def _agreement_key_problem(raw: bytes) -> str | None:
    # Canonical encodings only (as device registration, crypto.devices), so
    # the salt bytes a sender uses are the ones the recipient derives from its
    # own key.
    if not is_canonical_x25519(raw):
        return "not a canonical X25519 public key"
    if int.from_bytes(raw, "little") in _SMALL_ORDER_U:
        return "a small-order X25519 key"  # RFC 7748 section 6.1
    return None


def _check_uuid(name: str, value: object) -> None:
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise EnvelopeError(f"{name}: not a canonical lowercase UUID")


def _check_bytes(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, bytes) or not low <= len(value) <= high:
        size = f"{low}" if low == high else f"{low}..{high}"
        raise EnvelopeError(f"{name}: not {size} bytes")


@dataclass(frozen=True)
class EnvelopeHeader:
    """The signed, authenticated, unencrypted part of an envelope.

    Construction validates every field and raises ``EnvelopeError``.
    """

    conversation_id: str
    sender_user_id: str
    sender_device_id: str
    client_msg_id: str
    created_at: int
    content_type: str
    ephemeral_key: bytes
    key_commitment: bytes

    def __post_init__(self) -> None:
        _check_uuid("conversation_id", self.conversation_id)
        _check_uuid("sender_user_id", self.sender_user_id)
        _check_uuid("sender_device_id", self.sender_device_id)
        if not isinstance(self.client_msg_id, str) or not _CLIENT_MSG_ID.fullmatch(
            self.client_msg_id
        ):
            raise EnvelopeError("client_msg_id: not 1..64 characters of A-Z a-z 0-9 _ . : -")
        if type(self.created_at) is not int or not 0 <= self.created_at <= MAX_TIMESTAMP:
            raise EnvelopeError("created_at: not an integer of Unix milliseconds in 0..2**53-1")
        if not isinstance(self.content_type, str) or not _CONTENT_TYPE.fullmatch(self.content_type):
            raise EnvelopeError('content_type: not a lowercase "type/subtype" (RFC 6838)')
        _check_bytes("ephemeral_key", self.ephemeral_key, KEY_BYTES, KEY_BYTES)
        problem = _agreement_key_problem(self.ephemeral_key)
        if problem is not None:
            raise EnvelopeError(f"ephemeral_key: {problem}")
        _check_bytes("key_commitment", self.key_commitment, KEY_BYTES, KEY_BYTES)

    def to_dict(self) -> dict[str, Any]:
        """The wire form of the header."""
        return {
            "v": ENVELOPE_VERSION,
            "conversation_id": self.conversation_id,
            "sender_user_id": self.sender_user_id,
            "sender_device_id": self.sender_device_id,
            "client_msg_id": self.client_msg_id,
            "created_at": self.created_at,
            "content_type": self.content_type,
            "ephemeral_key": encode_b64url(self.ephemeral_key),
            "key_commitment": encode_b64url(self.key_commitment),
        }


@dataclass(frozen=True)
class WrappedKey:
    """The content key wrapped for one recipient device."""

    device_id: str
    nonce: bytes
    wrapped_key: bytes

    def __post_init__(self) -> None:
        _check_uuid("device_id", self.device_id)
        _check_bytes("nonce", self.nonce, NONCE_BYTES, NONCE_BYTES)
        _check_bytes("wrapped_key", self.wrapped_key, WRAPPED_KEY_BYTES, WRAPPED_KEY_BYTES)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "nonce": encode_b64url(self.nonce),
            "wrapped_key": encode_b64url(self.wrapped_key),
        }


@dataclass(frozen=True)
class ParsedEnvelope:
    """A structurally valid envelope; construction raises ``EnvelopeError``.

    Being a ``ParsedEnvelope`` says nothing about the signature:
    ``verify_envelope`` checks that. ``recipients`` are ascending by device id.
    """

    header: EnvelopeHeader
    recipients: tuple[WrappedKey, ...]
    nonce: bytes
    ciphertext: bytes
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.header, EnvelopeHeader):
            raise EnvelopeError("header: not an EnvelopeHeader")
        if (
            not isinstance(self.recipients, tuple)
            or not 1 <= len(self.recipients) <= MAX_RECIPIENTS
        ):
            raise EnvelopeError(f"recipients: not 1..{MAX_RECIPIENTS} entries")
        previous = ""
        for index, entry in enumerate(self.recipients):
            if not isinstance(entry, WrappedKey):
                raise EnvelopeError(f"recipients[{index}]: not a WrappedKey")
            if entry.device_id == previous:
                raise EnvelopeError(f"recipients[{index}].device_id: duplicate")
            if entry.device_id < previous:
                raise EnvelopeError(f"recipients[{index}]: not in ascending device_id order")
            previous = entry.device_id
        _check_bytes("nonce", self.nonce, NONCE_BYTES, NONCE_BYTES)
        _check_bytes("ciphertext", self.ciphertext, GCM_TAG_BYTES, MAX_CIPHERTEXT_BYTES)
        _check_bytes("signature", self.signature, SIGNATURE_BYTES, SIGNATURE_BYTES)

    def recipient(self, device_id: str) -> WrappedKey | None:
        """The entry for ``device_id``, if there is one."""
        return next((entry for entry in self.recipients if entry.device_id == device_id), None)

    def to_dict(self) -> dict[str, Any]:
        """The wire form: bytes as unpadded base64url (RFC 4648 section 5)."""
        return {
            "v": ENVELOPE_VERSION,
            "header": self.header.to_dict(),
            "recipients": [entry.to_dict() for entry in self.recipients],
            "nonce": encode_b64url(self.nonce),
            "ciphertext": encode_b64url(self.ciphertext),
            "signature": encode_b64url(self.signature),
        }


@dataclass(frozen=True)
class EnvelopeRandomness:
    """Injected randomness, for test vectors only.

    Never pass one outside tests: a content key, nonce or ephemeral key used
    twice breaks AES-GCM and X25519 confidentiality.
    """

    content_key: bytes
    payload_nonce: bytes
    ephemeral_key: X25519PrivateKey
    wrap_nonces: Mapping[str, bytes]


def _prefixed(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def header_bytes(header: EnvelopeHeader) -> bytes:
    """The canonical header bytes (layout in the module docstring): AAD and signed."""
    return b"".join(
        (
            HEADER_TAG,
            _prefixed(header.conversation_id.encode("ascii")),
            _prefixed(header.sender_user_id.encode("ascii")),
            _prefixed(header.sender_device_id.encode("ascii")),
            _prefixed(header.client_msg_id.encode("ascii")),
            header.created_at.to_bytes(8, "big"),
            _prefixed(header.content_type.encode("ascii")),
            header.ephemeral_key,
            header.key_commitment,
        )
    )


def signature_payload(envelope: ParsedEnvelope) -> bytes:
    """The bytes the sender device signs (layout in the module docstring)."""
    parts = [
        SIGNATURE_TAG,
        header_bytes(envelope.header),
        len(envelope.recipients).to_bytes(4, "big"),
    ]
    # A WrappedKey's three fields have fixed lengths (a canonical UUID, 12 and
    # 48 bytes), so their length prefixes are constants: a group's envelope
    # lists hundreds of entries.
    for entry in envelope.recipients:
        parts += (
            _DEVICE_ID_PREFIX,
            entry.device_id.encode("ascii"),
            _NONCE_PREFIX,
            entry.nonce,
            _WRAPPED_KEY_PREFIX,
            entry.wrapped_key,
        )
    parts += (envelope.nonce, envelope.ciphertext)
    return b"".join(parts)


_DEVICE_ID_PREFIX: Final = (36).to_bytes(4, "big")
_NONCE_PREFIX: Final = NONCE_BYTES.to_bytes(4, "big")
_WRAPPED_KEY_PREFIX: Final = WRAPPED_KEY_BYTES.to_bytes(4, "big")


def key_commitment(content_key: bytes) -> bytes:
    """The header's commitment to the content key: SHA-256 of a tag and ``content_key``."""
    return hashlib.sha256(KEY_COMMITMENT_TAG + content_key).digest()


def derive_wrap_key(
    shared_secret: bytes, ephemeral_key: bytes, recipient_key: bytes, device_id: str
) -> bytes:
    """HKDF-SHA256 of the X25519 secret, bound to both public keys and the device id."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=ephemeral_key + recipient_key,
        info=WRAP_INFO_PREFIX + device_id.encode("ascii"),
    ).derive(shared_secret)


def _fresh_randomness(device_ids: list[str]) -> EnvelopeRandomness:
    return EnvelopeRandomness(
        content_key=AESGCM.generate_key(bit_length=256),
        payload_nonce=secrets.token_bytes(NONCE_BYTES),
        ephemeral_key=X25519PrivateKey.generate(),
        wrap_nonces={device_id: secrets.token_bytes(NONCE_BYTES) for device_id in device_ids},
    )


def encrypt_envelope(
    *,
    payload: bytes,
    conversation_id: str,
    sender_user_id: str,
    sender_device_id: str,
    client_msg_id: str,
    created_at: int,
    content_type: str,
    sender_signing_key: Ed25519PrivateKey,
    recipients: Mapping[str, X25519PublicKey],
    randomness: EnvelopeRandomness | None = None,
) -> dict[str, Any]:
    """Encrypt ``payload`` for ``recipients`` (device id -> agreement key) and sign it.

    List every device that should read the message, the sender's other
    devices included. Returns the wire form (``ParsedEnvelope.to_dict``).
    Raises ``ValueError`` for bad arguments. ``randomness`` is for test
    vectors only.
    """
    if not isinstance(payload, bytes) or len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload: not bytes of at most {MAX_PAYLOAD_BYTES}")
    if not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise ValueError(f"recipients: not 1..{MAX_RECIPIENTS} devices")
    device_ids = sorted(recipients)
    recipient_keys: dict[str, bytes] = {}
    for device_id in device_ids:
        raw = recipients[device_id].public_bytes_raw()
        problem = _agreement_key_problem(raw)
        if problem is not None:
            raise ValueError(f"recipients[{device_id!r}]: {problem}")
        recipient_keys[device_id] = raw
    rand = _fresh_randomness(device_ids) if randomness is None else randomness
    if len(rand.content_key) != KEY_BYTES or len(rand.payload_nonce) != NONCE_BYTES:
        raise ValueError("randomness: content_key or payload_nonce of the wrong size")
    if sorted(rand.wrap_nonces) != device_ids or any(
        len(nonce) != NONCE_BYTES for nonce in rand.wrap_nonces.values()
    ):
        raise ValueError("randomness: wrap_nonces must be 12 bytes for each recipient")

    try:
        header = EnvelopeHeader(
            conversation_id=conversation_id,
            sender_user_id=sender_user_id,
            sender_device_id=sender_device_id,
            client_msg_id=client_msg_id,
            created_at=created_at,
            content_type=content_type,
            ephemeral_key=rand.ephemeral_key.public_key().public_bytes_raw(),
            key_commitment=key_commitment(rand.content_key),
        )
        for device_id in device_ids:
            _check_uuid(f"recipients[{device_id!r}]", device_id)
    except EnvelopeError as exc:
        raise ValueError(exc.message) from None
    aad = header_bytes(header)
    ciphertext = AESGCM(rand.content_key).encrypt(rand.payload_nonce, payload, aad)
    wrapped: list[WrappedKey] = []
    for device_id in device_ids:
        shared = rand.ephemeral_key.exchange(recipients[device_id])
        wrap_key = derive_wrap_key(
            shared, header.ephemeral_key, recipient_keys[device_id], device_id
        )
        nonce = rand.wrap_nonces[device_id]
        sealed = AESGCM(wrap_key).encrypt(nonce, rand.content_key, aad + device_id.encode("ascii"))
        wrapped.append(WrappedKey(device_id=device_id, nonce=nonce, wrapped_key=sealed))
    unsigned = ParsedEnvelope(
        header=header,
        recipients=tuple(wrapped),
        nonce=rand.payload_nonce,
        ciphertext=ciphertext,
        signature=bytes(SIGNATURE_BYTES),
    )
    signature = sender_signing_key.sign(signature_payload(unsigned))
    return replace(unsigned, signature=signature).to_dict()


def _decode(name: str, value: object, low: int, high: int) -> bytes:
    # Strict: the URL-safe alphabet, no padding, the canonical encoding only
    # (re-encoding gives the same text), and the length bounded before decoding.
    if not isinstance(value, str) or len(value) > (high * 4 + 2) // 3:
        raise EnvelopeError(f"{name}: not unpadded base64url of at most {high} bytes")
    if not _B64URL.fullmatch(value):
        raise EnvelopeError(f"{name}: not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise EnvelopeError(f"{name}: not unpadded base64url") from None
    if encode_b64url(data) != value:
        raise EnvelopeError(f"{name}: not canonical base64url")
    _check_bytes(name, data, low, high)
    return data


def _object(name: str, value: object, keys: frozenset[str]) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise EnvelopeError(f"{name}: not a JSON object")
    present = set(value)
    if present != keys:
        missing, extra = sorted(keys - present), sorted(map(repr, present - keys))
        raise EnvelopeError(f"{name}: missing keys {missing}, unknown keys {extra}")
    return value


def _check_version(name: str, value: object) -> None:
    if type(value) is not int or value != ENVELOPE_VERSION:
        raise EnvelopeError(f"{name}: unsupported version (expected {ENVELOPE_VERSION})")


def parse_envelope(envelope: object) -> ParsedEnvelope:
    """Parse the wire form exactly (structure, types, sizes, order); no signature check.

    The server uses ``header.sender_device_id`` to find the key for
    ``verify_envelope``. Raises ``EnvelopeError``.
    """
    data = _object("envelope", envelope, _ENVELOPE_KEYS)
    _check_version("v", data["v"])
    raw_header = _object("header", data["header"], _HEADER_KEYS)
    _check_version("header.v", raw_header["v"])
    try:
        header = EnvelopeHeader(
            conversation_id=raw_header["conversation_id"],
            sender_user_id=raw_header["sender_user_id"],
            sender_device_id=raw_header["sender_device_id"],
            client_msg_id=raw_header["client_msg_id"],
            created_at=raw_header["created_at"],
            content_type=raw_header["content_type"],
            ephemeral_key=_decode("ephemeral_key", raw_header["ephemeral_key"], 32, 32),
            key_commitment=_decode("key_commitment", raw_header["key_commitment"], 32, 32),
        )
    except EnvelopeError as exc:
        raise EnvelopeError(f"header.{exc.message}") from None
    raw_recipients = data["recipients"]
    if not isinstance(raw_recipients, list) or not 1 <= len(raw_recipients) <= MAX_RECIPIENTS:
        raise EnvelopeError(f"recipients: not a list of 1..{MAX_RECIPIENTS} entries")
    recipients = _well_formed_recipients(raw_recipients) or _recipients(raw_recipients)
    return ParsedEnvelope(
        header=header,
        recipients=tuple(recipients),
        nonce=_decode("nonce", data["nonce"], NONCE_BYTES, NONCE_BYTES),
        ciphertext=_decode("ciphertext", data["ciphertext"], GCM_TAG_BYTES, MAX_CIPHERTEXT_BYTES),
        signature=_decode("signature", data["signature"], SIGNATURE_BYTES, SIGNATURE_BYTES),
    )


# Unpadded base64url of exactly 12 and 48 bytes: 16 and 64 characters. Both are
# multiples of 3 bytes, so every string of that length in the alphabet is the
# canonical encoding of its bytes, and strings of it can be decoded joined.
_NONCE_CHARS: Final = NONCE_BYTES * 4 // 3
_WRAPPED_CHARS: Final = WRAPPED_KEY_BYTES * 4 // 3


def _well_formed_recipients(raw: list[Any]) -> list[WrappedKey] | None:
    """The recipients, parsed in bulk (a group's envelope lists hundreds); ``None``
    if any entry is not plainly well formed, for ``_recipients`` to name the problem."""
    device_ids: list[str] = []
    nonces: list[str] = []
    keys: list[str] = []
    for item in raw:
        if type(item) is not dict or item.keys() != _RECIPIENT_KEYS:
            return None
        device_id, nonce, key = item["device_id"], item["nonce"], item["wrapped_key"]
        if (
            type(device_id) is not str
            or type(nonce) is not str
            or type(key) is not str
            or len(nonce) != _NONCE_CHARS
            or len(key) != _WRAPPED_CHARS
            or not _UUID.fullmatch(device_id)
        ):
            return None
        device_ids.append(device_id)
        nonces.append(nonce)
        keys.append(key)
    joined_nonces, joined_keys = "".join(nonces), "".join(keys)
    if not _B64URL.fullmatch(joined_nonces) or not _B64URL.fullmatch(joined_keys):
        return None
    nonce_bytes = base64.urlsafe_b64decode(joined_nonces)
    key_bytes = base64.urlsafe_b64decode(joined_keys)
    return [
        _checked_wrapped_key(
            device_id,
            nonce_bytes[i * NONCE_BYTES : (i + 1) * NONCE_BYTES],
            key_bytes[i * WRAPPED_KEY_BYTES : (i + 1) * WRAPPED_KEY_BYTES],
        )
        for i, device_id in enumerate(device_ids)
    ]


def _checked_wrapped_key(device_id: str, nonce: bytes, wrapped_key: bytes) -> WrappedKey:
    """A ``WrappedKey`` of values the caller has checked as ``__post_init__`` would
    (a canonical UUID, 12 and 48 bytes), without checking them again."""
    entry = object.__new__(WrappedKey)
    fields = entry.__dict__  # half the cost of three frozen-dataclass setattrs
    fields["device_id"] = device_id
    fields["nonce"] = nonce
    fields["wrapped_key"] = wrapped_key
    return entry


def _recipients(raw: list[Any]) -> list[WrappedKey]:
    """The recipients entry by entry; raises ``EnvelopeError`` naming the first bad one."""
    recipients = []
    for index, item in enumerate(raw):
        name = f"recipients[{index}]"
        entry = _object(name, item, _RECIPIENT_KEYS)
        try:
            recipients.append(
                WrappedKey(
                    device_id=entry["device_id"],
                    nonce=_decode("nonce", entry["nonce"], NONCE_BYTES, NONCE_BYTES),
                    wrapped_key=_decode(
                        "wrapped_key", entry["wrapped_key"], WRAPPED_KEY_BYTES, WRAPPED_KEY_BYTES
                    ),
                )
            )
        except EnvelopeError as exc:
            raise EnvelopeError(f"{name}.{exc.message}") from None
    return recipients


def verify_envelope(
    envelope: Mapping[str, Any] | ParsedEnvelope, sender_signing_public: Ed25519PublicKey
) -> ParsedEnvelope:
    """The server's check: structure, sizes and the sender device's signature; no decryption.

    Raises ``EnvelopeError`` (``invalid_envelope``) or ``EnvelopeSignatureError``
    (``invalid_signature``), both 422. The caller still compares the header
    with its own context (conversation, sender, device, clock).
    """
    parsed = envelope if isinstance(envelope, ParsedEnvelope) else parse_envelope(envelope)
    try:
        sender_signing_public.verify(parsed.signature, signature_payload(parsed))
    except InvalidSignature:
        raise EnvelopeSignatureError(
            "signature: not the sender device's signature of this envelope"
        ) from None
    return parsed


def verify_envelope_with_raw_key(parsed: ParsedEnvelope, signing_key: bytes) -> ParsedEnvelope:
    """``verify_envelope`` for the server's hot path: the same check with libsodium,
    from the sender device's raw 32-byte key.

    libsodium verifies in half the time OpenSSL takes here (130 against 270
    µs for a group's envelope) and is stricter: it also refuses non-canonical
    encodings and small-order points, which no honest signer produces (device
    keys are checked for both when registered, crypto.devices).
    """
    try:
        crypto_sign_open(parsed.signature + signature_payload(parsed), signing_key)
    except (CryptoError, ValueError, TypeError):
        raise EnvelopeSignatureError(
            "signature: not the sender device's signature of this envelope"
        ) from None
    return parsed


def decrypt_envelope(
    envelope: Mapping[str, Any] | ParsedEnvelope,
    *,
    device_id: str,
    agreement_key: X25519PrivateKey,
    sender_signing_public: Ed25519PublicKey,
) -> bytes:
    """Verify the signature, then unwrap the content key for ``device_id`` and decrypt.

    Raises ``EnvelopeError``/``EnvelopeSignatureError`` as ``verify_envelope``,
    ``EnvelopeNotRecipientError`` when the envelope has no entry for this
    device, and ``EnvelopeDecryptionError`` when the entry does not open, the
    key in it is not the one the header commits to, or the payload does not open.
    """
    parsed = verify_envelope(envelope, sender_signing_public)
    entry = parsed.recipient(device_id)
    if entry is None:
        raise EnvelopeNotRecipientError("recipients: no wrapped key for this device")
    aad = header_bytes(parsed.header)
    recipient_key = agreement_key.public_key().public_bytes_raw()
    try:
        shared = agreement_key.exchange(
            X25519PublicKey.from_public_bytes(parsed.header.ephemeral_key)
        )
        wrap_key = derive_wrap_key(shared, parsed.header.ephemeral_key, recipient_key, device_id)
        content_key = AESGCM(wrap_key).decrypt(
            entry.nonce, entry.wrapped_key, aad + device_id.encode("ascii")
        )
    except (InvalidTag, ValueError):
        raise EnvelopeDecryptionError(
            "wrapped_key: does not open with this device's agreement key"
        ) from None
    # Before the payload: a key other than the committed one could open a
    # ciphertext crafted for it to another text (see the module docstring).
    if not hmac.compare_digest(key_commitment(content_key), parsed.header.key_commitment):
        raise EnvelopeDecryptionError(
            "header.key_commitment: not the commitment to the key wrapped for this device"
        )
    try:
        return AESGCM(content_key).decrypt(parsed.nonce, parsed.ciphertext, aad)
    except InvalidTag:
        raise EnvelopeDecryptionError("ciphertext: does not open with the content key") from None
