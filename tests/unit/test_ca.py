"""Device certificates: the CA's Ed25519 signature over code, timestamp and device key."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from config.errors import AuthenticationError
from crypto.ca import (
    CertificateError,
    DeviceCertificate,
    certificate_payload,
    issue_certificate,
    verify_certificate,
)
from crypto.tokens import raw_public_key

NOW = 1_790_000_000
CODE = "u_7Hq2xZ"


@pytest.fixture(scope="module")
def ca_key() -> Ed25519PrivateKey:
    """The CA signing key for this module."""
    return Ed25519PrivateKey.generate()


@pytest.fixture
def device_key() -> bytes:
    """A device's raw Ed25519 public key, made on the 'client'."""
    return raw_public_key(Ed25519PrivateKey.generate().public_key())


@pytest.fixture
def cert(ca_key: Ed25519PrivateKey, device_key: bytes) -> DeviceCertificate:
    """A certificate issued at NOW."""
    return issue_certificate(ca_key, CODE, device_key, NOW)


def test_payload_layout_is_exact() -> None:
    """The payload is tag, 4-byte length, UTF-8 code, 8-byte timestamp, 32-byte key."""
    key = bytes(range(32))
    payload = certificate_payload("hé", 0x000F0E0D0C0B0A09, key)
    assert payload == (
        b"parley-ca-v1\x00"
        + b"\x00\x00\x00\x03"
        + "hé".encode()
        + b"\x00\x0f\x0e\x0d\x0c\x0b\x0a\x09"
        + key
    )


def test_payload_is_unambiguous() -> None:
    """Moving bytes between code and timestamp gives a different payload."""
    key = bytes(32)
    assert certificate_payload("ab", 1, key) != certificate_payload("a", 1, key)
    assert certificate_payload("a\x00", 0, key) != certificate_payload("a", 0, key)


@pytest.mark.parametrize(
    ("code", "timestamp", "key"),
    [
        ("", NOW, bytes(32)),
        ("x" * 257, NOW, bytes(32)),
        ("a\ud800", NOW, bytes(32)),
        (CODE, -1, bytes(32)),
        (CODE, 2**53, bytes(32)),
        (CODE, True, bytes(32)),
        (CODE, 1.5, bytes(32)),
        (CODE, NOW, bytes(31)),
        (CODE, NOW, bytes(33)),
        (CODE, NOW, "k" * 32),
    ],
)
def test_payload_rejects_bad_arguments(code: Any, timestamp: Any, key: Any) -> None:
    """Empty or oversized codes, out-of-range timestamps and wrong key sizes raise ValueError."""
    with pytest.raises(ValueError, match=r"code|reg_timestamp|device_public_key"):
        certificate_payload(code, timestamp, key)


def test_issued_certificate_verifies(ca_key: Ed25519PrivateKey, cert: DeviceCertificate) -> None:
    """A freshly issued certificate verifies against the CA public key."""
    verify_certificate(ca_key.public_key(), cert, now=NOW)
    verify_certificate(ca_key.public_key(), cert, now=NOW + 3600, max_age=3600)
    assert len(cert.reg_sign) == 64


def test_other_ca_key_fails(cert: DeviceCertificate) -> None:
    """A certificate does not verify against another CA's public key."""
    with pytest.raises(CertificateError, match="reg_sign"):
        verify_certificate(Ed25519PrivateKey.generate().public_key(), cert, now=NOW)


@pytest.mark.parametrize(
    "change",
    [
        {"code": CODE + "x"},
        {"code": CODE.upper()},
        {"reg_timestamp": NOW - 1},
        {"reg_timestamp": NOW + 1},
        {"device_public_key": bytes(32)},
        {"reg_sign": bytes(64)},
    ],
)
def test_tampered_fields_fail(
    ca_key: Ed25519PrivateKey, cert: DeviceCertificate, change: dict[str, Any]
) -> None:
    """Changing the code, timestamp, device key or signature makes verification fail."""
    tampered = dataclasses.replace(cert, **change)
    with pytest.raises(CertificateError, match="reg_sign") as info:
        verify_certificate(ca_key.public_key(), tampered, now=NOW)
    assert info.value.code == "invalid_certificate"
    assert info.value.status == 401


@pytest.mark.parametrize("index", [0, 31, 32, 63])
def test_one_flipped_signature_bit_fails(
    ca_key: Ed25519PrivateKey, cert: DeviceCertificate, index: int
) -> None:
    """Flipping one bit anywhere in reg_sign makes verification fail."""
    sign = bytearray(cert.reg_sign)
    sign[index] ^= 1
    with pytest.raises(CertificateError):
        verify_certificate(ca_key.public_key(), dataclasses.replace(cert, reg_sign=bytes(sign)))


def test_future_timestamp_fails(ca_key: Ed25519PrivateKey, device_key: bytes) -> None:
    """A timestamp more than 300 s ahead fails; within 300 s of skew it passes."""
    public = ca_key.public_key()
    verify_certificate(public, issue_certificate(ca_key, CODE, device_key, NOW + 300), now=NOW)
    with pytest.raises(CertificateError, match="future"):
        verify_certificate(public, issue_certificate(ca_key, CODE, device_key, NOW + 301), now=NOW)


def test_max_age(ca_key: Ed25519PrivateKey, cert: DeviceCertificate) -> None:
    """With max_age a certificate older than the limit fails; without it, age is not checked."""
    public = ca_key.public_key()
    verify_certificate(public, cert, now=NOW + 10**8)
    verify_certificate(public, cert, now=NOW + 600, max_age=600)
    with pytest.raises(CertificateError, match="older"):
        verify_certificate(public, cert, now=NOW + 601, max_age=600)


def test_default_clock_is_the_wall_clock(ca_key: Ed25519PrivateKey, device_key: bytes) -> None:
    """Without now, the wall clock decides: a 2100 timestamp is in the future."""
    cert = issue_certificate(ca_key, CODE, device_key, 4_102_444_800)
    with pytest.raises(CertificateError, match="future"):
        verify_certificate(ca_key.public_key(), cert)


def test_dict_round_trip(ca_key: Ed25519PrivateKey, cert: DeviceCertificate) -> None:
    """to_dict survives JSON and from_dict gives back an equal, verifiable certificate."""
    data = json.loads(json.dumps(cert.to_dict()))
    assert data["v"] == 1 and data["alg"] == "Ed25519"
    assert set(data) == {"v", "alg", "code", "reg_timestamp", "device_public_key", "reg_sign"}
    assert "=" not in data["device_public_key"] + data["reg_sign"]
    assert len(data["device_public_key"]) == 43 and len(data["reg_sign"]) == 86
    parsed = DeviceCertificate.from_dict(data)
    assert parsed == cert
    verify_certificate(ca_key.public_key(), parsed, now=NOW)


def test_unicode_code_round_trips(ca_key: Ed25519PrivateKey, device_key: bytes) -> None:
    """A non-ASCII code is signed as UTF-8 and survives the dict round trip."""
    cert = issue_certificate(ca_key, "Ωmega-ユーザー", device_key, NOW)
    parsed = DeviceCertificate.from_dict(json.loads(json.dumps(cert.to_dict())))
    verify_certificate(ca_key.public_key(), parsed, now=NOW)


def mutated(cert: DeviceCertificate, **changes: Any) -> dict[str, Any]:
    data = cert.to_dict()
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return data


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"v": 2}, "version"),
        ({"v": True}, "version"),
        ({"v": "1"}, "version"),
        ({"alg": "EdDSA"}, "alg"),
        ({"code": ...}, "missing keys"),
        ({"extra": 1}, "unknown keys"),
        ({"code": ""}, "code"),
        ({"code": 7}, "code"),
        ({"reg_timestamp": "1790000000"}, "reg_timestamp"),
        ({"reg_timestamp": 1.79e9}, "reg_timestamp"),
        ({"reg_timestamp": -5}, "reg_timestamp"),
        ({"device_public_key": "AAAA"}, "device_public_key: not 32 bytes"),
        ({"device_public_key": "A" * 43 + "="}, "device_public_key"),
        ({"device_public_key": "+" * 43}, "device_public_key"),
        ({"device_public_key": "A" * 42 + "B"}, "canonical"),
        ({"device_public_key": None}, "device_public_key"),
        ({"reg_sign": "A" * 85}, "reg_sign"),
        ({"reg_sign": "A" * 10_000}, "reg_sign"),
    ],
)
def test_from_dict_is_strict(cert: DeviceCertificate, changes: dict[str, Any], match: str) -> None:
    """Wrong version, alg, keys, types, padding or base64 alphabet raise CertificateError."""
    with pytest.raises(CertificateError, match=match):
        DeviceCertificate.from_dict(mutated(cert, **changes))


@pytest.mark.parametrize("data", [None, [], "cert", 42, {}])
def test_from_dict_rejects_non_objects(data: Any) -> None:
    """Anything but a dict with the exact keys raises CertificateError."""
    with pytest.raises(CertificateError):
        DeviceCertificate.from_dict(data)


def test_constructor_validates(device_key: bytes) -> None:
    """Building a DeviceCertificate with a wrong-size signature or key raises CertificateError."""
    with pytest.raises(CertificateError, match="reg_sign"):
        DeviceCertificate(CODE, NOW, device_key, bytes(63))
    with pytest.raises(CertificateError, match="device_public_key"):
        DeviceCertificate(CODE, NOW, bytes(31), bytes(64))


def test_verify_rejects_non_certificates(ca_key: Ed25519PrivateKey) -> None:
    """Passing something that is not a DeviceCertificate raises CertificateError."""
    with pytest.raises(CertificateError):
        verify_certificate(ca_key.public_key(), {"code": CODE}, now=NOW)  # type: ignore[arg-type]


def test_certificate_error_is_an_authentication_error() -> None:
    """CertificateError is a 401 AuthenticationError with code invalid_certificate."""
    error = CertificateError("x")
    assert isinstance(error, AuthenticationError)
    assert (error.status, error.code) == (401, "invalid_certificate")
