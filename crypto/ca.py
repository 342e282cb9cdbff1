"""Device certificates: the server, as CA, certifies a device's Ed25519 public key.

Seed 000's CA answers a verified sign-in with ``{code, regTimestamp, regSign}``
and anyone holding the CA public key can check ``regSign``. Unlike seed 000
the CA never makes or sees the private key: the client generates its key
pair and the CA signs only the public half (ARCHITECTURE.md section 4).

Signed payload (``parley-ca-v1``; documented in docs/PROTOCOL.md)::

    b"parley-ca-v1\\x00"                      13 bytes, domain separation
    len(code_utf8)   unsigned 32-bit big-endian
    code_utf8        the user's public handle, UTF-8, 1..256 bytes
    reg_timestamp    unsigned 64-bit big-endian, Unix seconds (0..2**53-1)
    device_key       32 bytes, raw Ed25519 public key (RFC 8032)

Every part has a fixed size or a length prefix, so no two different
``(code, timestamp, key)`` triples give the same bytes, and the versioned tag
keeps the signature from being valid for any other message the CA key signs.
``reg_sign`` is the 64-byte Ed25519 (RFC 8032, pure) signature of it.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from config.errors import AuthenticationError

PAYLOAD_TAG: Final = b"parley-ca-v1\x00"
CERTIFICATE_VERSION: Final = 1
ALGORITHM: Final = "Ed25519"
MAX_CODE_BYTES: Final = 256
MAX_TIMESTAMP: Final = 2**53 - 1  # exact in a JSON number / JavaScript double
MAX_CLOCK_SKEW: Final = 300
_FIELDS: Final = frozenset({"v", "alg", "code", "reg_timestamp", "device_public_key", "reg_sign"})
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class CertificateError(AuthenticationError):
    code = "invalid_certificate"


def _field_problem(code: object, reg_timestamp: object, device_public_key: object) -> str | None:
    if not isinstance(code, str) or not code:
        return "code: not a non-empty string"
    try:
        code_bytes = code.encode("utf-8")
    except UnicodeEncodeError:
        return "code: not valid Unicode"
    if len(code_bytes) > MAX_CODE_BYTES:
        return f"code: longer than {MAX_CODE_BYTES} UTF-8 bytes"
    if type(reg_timestamp) is not int or not 0 <= reg_timestamp <= MAX_TIMESTAMP:
        return "reg_timestamp: not an integer of Unix seconds in 0..2**53-1"
    if not isinstance(device_public_key, bytes) or len(device_public_key) != 32:
        return "device_public_key: not 32 bytes"
    return None


def certificate_payload(code: str, reg_timestamp: int, device_public_key: bytes) -> bytes:
    """The canonical bytes the CA signs (layout in the module docstring).

    Raises ``ValueError`` for out-of-range arguments.
    """
    problem = _field_problem(code, reg_timestamp, device_public_key)
    if problem is not None:
        raise ValueError(problem)
    code_bytes = code.encode("utf-8")
    return (
        PAYLOAD_TAG
        + len(code_bytes).to_bytes(4, "big")
        + code_bytes
        + reg_timestamp.to_bytes(8, "big")
        + device_public_key
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _from_b64url(name: str, text: object, length: int) -> bytes:
    # Strict: the URL-safe alphabet, no padding, and the canonical encoding only
    # (re-encoding must give the same text), so one certificate has one JSON form.
    if not isinstance(text, str) or len(text) > 128 or not _B64URL.fullmatch(text):
        raise CertificateError(f"{name}: not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise CertificateError(f"{name}: not unpadded base64url") from None
    if _b64url(data) != text:
        raise CertificateError(f"{name}: not canonical base64url")
    if len(data) != length:
        raise CertificateError(f"{name}: not {length} bytes")
    return data


@dataclass(frozen=True)
class DeviceCertificate:
    """The CA's statement that ``device_public_key`` belongs to user ``code``.

    Construction validates the fields and raises ``CertificateError``; it does
    not check the signature (``verify_certificate`` does).
    """

    code: str
    reg_timestamp: int
    device_public_key: bytes
    reg_sign: bytes

    def __post_init__(self) -> None:
        problem = _field_problem(self.code, self.reg_timestamp, self.device_public_key)
        if problem is not None:
            raise CertificateError(problem)
        if not isinstance(self.reg_sign, bytes) or len(self.reg_sign) != 64:
            raise CertificateError("reg_sign: not 64 bytes")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: bytes as unpadded base64url (RFC 4648 section 5)."""
        return {
            "v": CERTIFICATE_VERSION,
            "alg": ALGORITHM,
            "code": self.code,
            "reg_timestamp": self.reg_timestamp,
            "device_public_key": _b64url(self.device_public_key),
            "reg_sign": _b64url(self.reg_sign),
        }

    @classmethod
    def from_dict(cls, data: object) -> DeviceCertificate:
        """Parse ``to_dict``'s form exactly: no missing or extra keys, strict types.

        Raises ``CertificateError``.
        """
        if not isinstance(data, dict):
            raise CertificateError("certificate: not a JSON object")
        keys = set(data)
        if keys != _FIELDS:
            missing, extra = sorted(_FIELDS - keys), sorted(map(str, keys - _FIELDS))
            raise CertificateError(f"certificate: missing keys {missing}, unknown keys {extra}")
        version = data["v"]
        if type(version) is not int or version != CERTIFICATE_VERSION:
            raise CertificateError(f"v: unsupported version (expected {CERTIFICATE_VERSION})")
        if data["alg"] != ALGORITHM:
            raise CertificateError(f'alg: must be "{ALGORITHM}"')
        return cls(
            code=data["code"],
            reg_timestamp=data["reg_timestamp"],
            device_public_key=_from_b64url("device_public_key", data["device_public_key"], 32),
            reg_sign=_from_b64url("reg_sign", data["reg_sign"], 64),
        )


def issue_certificate(
    ca_key: Ed25519PrivateKey, code: str, device_public_key: bytes, reg_timestamp: int
) -> DeviceCertificate:
    """Sign ``certificate_payload`` with the CA key. Raises ``ValueError`` for bad arguments."""
    payload = certificate_payload(code, reg_timestamp, device_public_key)
    return DeviceCertificate(
        code=code,
        reg_timestamp=reg_timestamp,
        device_public_key=device_public_key,
        reg_sign=ca_key.sign(payload),
    )


def verify_certificate(
    ca_public_key: Ed25519PublicKey,
    cert: DeviceCertificate,
    *,
    now: int | None = None,
    max_age: int | None = None,
) -> None:
    """Check ``reg_sign`` and the timestamp; raise ``CertificateError`` if either fails.

    A timestamp more than ``MAX_CLOCK_SKEW`` (300 s) ahead of ``now`` is refused;
    with ``max_age`` one older than ``now - max_age`` is too (seed 000 step 4:
    "the regTimestamp is not expired").
    """
    if not isinstance(cert, DeviceCertificate):
        raise CertificateError("certificate: not a DeviceCertificate")
    payload = certificate_payload(cert.code, cert.reg_timestamp, cert.device_public_key)
    try:
        ca_public_key.verify(cert.reg_sign, payload)
    except InvalidSignature:
        raise CertificateError("reg_sign: not the CA's signature of this certificate") from None
    current = int(time.time()) if now is None else now
    if cert.reg_timestamp > current + MAX_CLOCK_SKEW:
        raise CertificateError("reg_timestamp: in the future")
    if max_age is not None and current - cert.reg_timestamp > max_age:
        raise CertificateError("reg_timestamp: older than the accepted maximum age")
