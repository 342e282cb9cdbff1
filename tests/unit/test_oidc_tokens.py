"""ID token validation, PKCE and identity keys of OpenID Connect (crypto/oidc.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from crypto.oidc import (
    IdTokenError,
    UnknownSigningKeyError,
    identity_value,
    pkce_challenge,
    pkce_verifier,
    request_nonce,
    verify_id_token,
)

ISSUER = "https://id.example.test"
CLIENT = "parley-client"
NONCE = "n-0S6_WzA2Mj"
NOW = 1_800_000_000.0


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(algorithm: str, private: Any, kid: str, **extra: Any) -> dict[str, Any]:
    jwk = json.loads(jwt.get_algorithm_by_name(algorithm).to_jwk(private.public_key()))
    return {**jwk, "kid": kid, "use": "sig", **extra}


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def jwks(rsa_key: Any, ec_key: Any, ed_key: Any) -> dict[str, Any]:
    return {
        "keys": [
            public_jwk("RS256", rsa_key, "rsa-1", alg="RS256"),
            public_jwk("ES256", ec_key, "ec-1"),
            public_jwk("EdDSA", ed_key, "ed-1"),
        ]
    }


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "248289761001",
        "aud": CLIENT,
        "iat": int(NOW),
        "exp": int(NOW) + 300,
        "nonce": NONCE,
        "name": "Jane Doe",
        "email": "jane@example.test",
        "email_verified": True,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: Any, alg: str = "RS256", kid: str | None = "rsa-1", **changes: Any) -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(claims(**changes), key, algorithm=alg, headers=headers)


def check(token: str, jwks: dict[str, Any], **options: Any) -> Any:
    return verify_id_token(
        token,
        jwks,
        issuer=options.pop("issuer", ISSUER),
        client_id=CLIENT,
        nonce=options.pop("nonce", NONCE),
        now=options.pop("now", NOW),
        **options,
    )


def unsigned(header: dict[str, Any], body: dict[str, Any]) -> str:
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(body).encode())}"


# --- accepted -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "kid", "key_name"),
    [("RS256", "rsa-1", "rsa_key"), ("ES256", "ec-1", "ec_key"), ("EdDSA", "ed-1", "ed_key")],
)
def test_valid_tokens_of_each_algorithm(
    request: pytest.FixtureRequest, jwks: dict[str, Any], alg: str, kid: str, key_name: str
) -> None:
    """RS256, ES256 and EdDSA tokens signed by a JWKS key give their claims."""
    key = request.getfixturevalue(key_name)
    result = check(sign(key, alg, kid), jwks)
    assert result.subject == "248289761001"
    assert (result.name, result.email, result.email_verified) == (
        "Jane Doe",
        "jane@example.test",
        True,
    )


def test_without_kid_the_only_key_of_its_type_is_used(rsa_key: Any, jwks: dict[str, Any]) -> None:
    """No `kid`: the one key of the algorithm's type verifies it (OIDC Core 10.1)."""
    assert check(sign(rsa_key, kid=None), jwks).subject == "248289761001"


def test_without_kid_and_several_keys_of_its_type_nothing_is_guessed(rsa_key: Any) -> None:
    """No `kid` and two RSA keys: an unknown key, not a guess."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = {"keys": [public_jwk("RS256", rsa_key, "a"), public_jwk("RS256", other, "b")]}
    with pytest.raises(UnknownSigningKeyError):
        check(sign(rsa_key, kid=None), keys)


def test_leeway_and_azp(rsa_key: Any, jwks: dict[str, Any]) -> None:
    """Clock skew within the leeway passes; `azp` equal to the client passes with two audiences."""
    check(sign(rsa_key, exp=int(NOW) - 30), jwks)
    check(sign(rsa_key, iat=int(NOW) + 30), jwks)
    check(sign(rsa_key, aud=[CLIENT, "other"], azp=CLIENT), jwks)
    check(sign(rsa_key, azp=CLIENT), jwks)


# --- refused ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"iss": "https://evil.test"}, "issuer"),
        ({"iss": ISSUER + "/"}, "issuer"),
        ({"aud": "other"}, "audience"),
        ({"aud": ["other", "another"]}, "audience"),
        ({"aud": [CLIENT, "other"]}, "azp"),
        ({"azp": "other"}, "azp"),
        ({"exp": int(NOW) - 61}, "expired"),
        ({"iat": int(NOW) + 61}, "future"),
        ({"iat": int(NOW) - 16 * 60 - 61, "exp": int(NOW) + 60}, "too long ago"),
        ({"nbf": int(NOW) + 120}, "not valid yet"),
        ({"nonce": "another"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"nonce": 12}, "nonce"),
        ({"sub": None}, "sub"),
        ({"sub": 42}, "sub"),
        ({"sub": ""}, "sub"),
        ({"sub": "s" * 256}, "sub"),
        ({"sub": "a\nb"}, "sub"),
        ({"sub": "ü"}, "sub"),
        ({"exp": None}, "exp"),
        ({"iat": None}, "iat"),
        ({"exp": "tomorrow"}, "exp"),
        ({"iat": True}, "iat"),
    ],
)
def test_claims_that_are_refused(
    rsa_key: Any, jwks: dict[str, Any], changes: dict[str, Any], why: str
) -> None:
    """Each wrong or missing claim fails validation with IdTokenError."""
    with pytest.raises(IdTokenError):
        check(sign(rsa_key, **changes), jwks)


def test_alg_none_is_refused(jwks: dict[str, Any]) -> None:
    """An unsigned token (`alg: none`) never passes."""
    for alg in ("none", "None", "NONE"):
        token = unsigned({"alg": alg, "kid": "rsa-1"}, claims()) + "."
        with pytest.raises(IdTokenError, match="not accepted"):
            check(token, jwks)


def test_hs256_keyed_with_the_public_key_is_refused(rsa_key: Any, jwks: dict[str, Any]) -> None:
    """The algorithm-confusion forgery: HS256 with the RSA public key as the secret."""
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = unsigned({"alg": "HS256", "kid": "rsa-1"}, claims())
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(IdTokenError, match="not accepted"):
        check(f"{signing_input}.{b64url(mac)}", jwks)


@pytest.mark.parametrize("alg", ["RS384", "RS512", "PS256", "ES384", "HS512"])
def test_other_algorithms_are_refused(rsa_key: Any, jwks: dict[str, Any], alg: str) -> None:
    """Only RS256, ES256 and EdDSA are accepted."""
    token = unsigned({"alg": alg, "kid": "rsa-1"}, claims()) + ".c2ln"
    with pytest.raises(IdTokenError, match="not accepted"):
        check(token, jwks)


def test_a_tampered_signature_or_body_is_refused(rsa_key: Any, jwks: dict[str, Any]) -> None:
    """Changing one character of the body or the signature breaks it."""
    head, body, signature = sign(rsa_key).split(".")
    forged_body = b64url(json.dumps(claims(sub="someone-else")).encode())
    for token in (f"{head}.{forged_body}.{signature}", f"{head}.{body}.{signature[::-1]}"):
        with pytest.raises(IdTokenError):
            check(token, jwks)


def test_a_key_of_another_type_or_use_under_the_kid_is_not_used(rsa_key: Any, ec_key: Any) -> None:
    """The kid's key must fit the algorithm (type, curve, `alg`, `use`), or it is unknown."""
    for keys in (
        {"keys": [public_jwk("ES256", ec_key, "rsa-1")]},
        {"keys": [public_jwk("RS256", rsa_key, "rsa-1", alg="RS512")]},
        {"keys": [public_jwk("RS256", rsa_key, "rsa-1", use="enc")]},
        {"keys": []},
        {"nokeys": True},
        {"keys": "not a list"},
    ):
        with pytest.raises(UnknownSigningKeyError):
            check(sign(rsa_key), keys)


def test_an_unknown_kid_is_an_unknown_key(rsa_key: Any, jwks: dict[str, Any]) -> None:
    """A kid the JWKS lacks: UnknownSigningKeyError, so the caller may refetch the keys."""
    with pytest.raises(UnknownSigningKeyError):
        check(sign(rsa_key, kid="rotated-away"), jwks)


def test_a_broken_key_in_the_jwks_is_an_error_not_a_crash(rsa_key: Any) -> None:
    """A JWKS entry with unusable numbers gives IdTokenError."""
    keys = {"keys": [{"kty": "RSA", "kid": "rsa-1", "n": "!!", "e": "AQAB"}]}
    with pytest.raises(IdTokenError):
        check(sign(rsa_key), keys)


def test_a_short_rsa_key_is_refused() -> None:
    """RSA keys under 2048 bits are refused (PyJWT's minimum key length, enforced)."""
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    keys = {"keys": [public_jwk("RS256", weak, "rsa-1")]}
    # Signed by hand: PyJWT warns when asked to sign with a short key.
    signing_input = unsigned({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}, claims())
    signature = weak.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(IdTokenError):
        check(f"{signing_input}.{b64url(signature)}", keys)


def test_critical_headers_are_refused(rsa_key: Any, jwks: dict[str, Any]) -> None:
    """A `crit` header extension Parley does not know fails the token."""
    token = jwt.encode(
        claims(), rsa_key, algorithm="RS256", headers={"kid": "rsa-1", "crit": ["exp"]}
    )
    with pytest.raises(IdTokenError):
        check(token, jwks)


@pytest.mark.parametrize(
    "token",
    ["", "a", "a.b", "a.b.c", "....", "x" * 20_000, "eyJhbGciOiJSUzI1NiJ9.!!.c2ln", "é.é.é"],
)
def test_malformed_tokens_are_id_token_errors(jwks: dict[str, Any], token: str) -> None:
    """Garbage in any shape is IdTokenError, never another exception."""
    with pytest.raises(IdTokenError):
        check(token, jwks)


def test_a_payload_that_is_not_an_object_is_refused(rsa_key: Any, jwks: dict[str, Any]) -> None:
    """A signed payload that is a JSON list is refused."""
    token = jwt.api_jws.encode(b"[1, 2]", rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    with pytest.raises(IdTokenError):
        check(token, jwks)


# --- PKCE, nonce, identity ----------------------------------------------------------------


def test_pkce_s256_matches_rfc_7636_appendix_b() -> None:
    """The S256 challenge of RFC 7636's example verifier is its example challenge."""
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_verifier_and_nonce_are_bound_to_the_state_and_secret() -> None:
    """Verifier and nonce: 43 base64url characters, the same for one state, else different."""
    secret = b"k" * 32
    verifier = pkce_verifier(secret, "state-1")
    assert len(verifier) == 43 and verifier == pkce_verifier(secret, "state-1")
    assert verifier != pkce_verifier(secret, "state-2")
    assert verifier != pkce_verifier(b"j" * 32, "state-1")
    assert request_nonce(secret, "state-1") not in (verifier, request_nonce(secret, "state-2"))


def test_identity_value_is_issuer_and_subject_within_the_column() -> None:
    """`issuer|sub`; a subject too long for the column becomes its SHA-256."""
    assert identity_value(ISSUER, "123", max_chars=255) == f"{ISSUER}|123"
    long_subject = "s" * 255
    value = identity_value(ISSUER, long_subject, max_chars=255)
    assert len(value) <= 255 and value.startswith(f"{ISSUER}|sha256:")
    assert value == identity_value(ISSUER, long_subject, max_chars=255)
    assert value != identity_value(ISSUER, "t" * 255, max_chars=255)


def test_now_defaults_to_the_clock(rsa_key: Any, jwks: dict[str, Any]) -> None:
    """Without `now`, the current time is used."""
    now = int(time.time())
    token = sign(rsa_key, iat=now, exp=now + 60)
    assert verify_id_token(token, jwks, issuer=ISSUER, client_id=CLIENT, nonce=NONCE).subject
