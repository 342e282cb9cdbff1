"""OpenID Connect without I/O: PKCE, nonces and ID token validation.

The server keeps no PKCE verifier or nonce: both are HMACs of the request's
``state`` under the server secret, so the key-value store holds nothing a
reader could replay. ID tokens are checked as OpenID Connect Core 1.0
section 3.1.3.7 says: a signature by a key of the provider's JWKS under an
allowed asymmetric algorithm (never ``none``, never an HMAC keyed with a
public key), ``iss`` equal to the configured issuer, ``aud`` holding the
client id (and ``azp`` equal to it when present), ``exp``/``iat`` with a
small leeway, and the request's ``nonce``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from config.errors import AuthenticationError

# RFC 7518 / RFC 8037 asymmetric algorithms, and the key type each needs.
ALLOWED_ALGORITHMS: dict[str, str] = {"RS256": "RSA", "ES256": "EC", "EdDSA": "OKP"}
_CURVES: dict[str, frozenset[str]] = {
    "ES256": frozenset({"P-256"}),
    "EdDSA": frozenset({"Ed25519", "Ed448"}),
}
MAX_ID_TOKEN_CHARS = 16 * 1024
# OpenID Connect Core 1.0, section 2: "It MUST NOT exceed 255 ASCII characters".
MAX_SUBJECT_CHARS = 255
_CLAIM_CHARS = 256


class IdTokenError(AuthenticationError):
    code = "oidc_id_token_invalid"


class UnknownSigningKeyError(IdTokenError):
    """No key of the JWKS fits the token's ``kid`` and algorithm (maybe a newer key)."""


@dataclass(frozen=True)
class IdTokenClaims:
    """What Parley keeps of a valid ID token."""

    subject: str
    name: str
    preferred_username: str
    email: str
    email_verified: bool


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _derive(secret: bytes, label: str, state: str) -> str:
    return _b64url(hmac.new(secret, f"{label}\x00{state}".encode(), hashlib.sha256).digest())


def pkce_verifier(secret: bytes, state: str) -> str:
    """RFC 7636 ``code_verifier``: 43 characters of base64url, 256 bits, bound to ``state``."""
    return _derive(secret, "oidc-pkce", state)


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 section 4.2, ``S256``: BASE64URL(SHA256(ASCII(code_verifier)))."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def request_nonce(secret: bytes, state: str) -> str:
    """The ``nonce`` sent with the authorization request that ``state`` names."""
    return _derive(secret, "oidc-nonce", state)


def _select_key(header: Mapping[str, Any], jwks: Mapping[str, Any], alg: str) -> jwt.PyJWK:
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        raise UnknownSigningKeyError("id token: the provider's JWKS has no keys")
    kid = header.get("kid")
    candidates = [
        key
        for key in keys
        if isinstance(key, dict)
        and key.get("kty") == ALLOWED_ALGORITHMS[alg]
        and key.get("use", "sig") == "sig"
        and key.get("alg", alg) == alg
        and (alg not in _CURVES or key.get("crv") in _CURVES[alg])
        and (kid is None or key.get("kid") == kid)
    ]
    # Without a kid, only an unambiguous key may be used (Core 1.0, section 10.1).
    if len(candidates) != 1:
        raise UnknownSigningKeyError("id token: no key of the provider's JWKS matches it")
    try:
        return jwt.PyJWK(candidates[0], algorithm=alg)
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise IdTokenError(f"id token: the provider's key is unusable ({exc})") from None


def _short_text(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str):
        return ""
    return value[:_CLAIM_CHARS]


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise IdTokenError(f"id token: `{name}` is missing or not a number")
    return float(value)


def verify_id_token(
    token: str,
    jwks: Mapping[str, Any],
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    now: float | None = None,
    leeway: float = 60,
    max_age: float = 15 * 60,
) -> IdTokenClaims:
    """Check an ID token from the token endpoint; its claims, or ``IdTokenError``.

    ``UnknownSigningKeyError`` means no key fits: the caller may fetch the JWKS
    again (the provider may have rotated its keys) and retry once.
    ``max_age`` bounds how long ago it was issued (``iat``).
    """
    if not isinstance(token, str) or not token or len(token) > MAX_ID_TOKEN_CHARS:
        raise IdTokenError("id token: missing or too long")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise IdTokenError("id token: malformed") from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
        raise IdTokenError(f"id token: algorithm {str(alg)[:16]!r} is not accepted")
    if "crit" in header:
        raise IdTokenError("id token: critical header extensions are not supported")
    key = _select_key(header, jwks, alg)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=client_id,
            issuer=issuer,
            options={
                "require": ["iss", "sub", "aud", "exp", "iat"],
                # Times are checked below against `now`, with the same leeway.
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "enforce_minimum_key_length": True,
            },
        )
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise IdTokenError(f"id token: {str(exc)[:200]}") from None
    if claims.get("iss") != issuer:  # PyJWT checks it too; say it where it matters
        raise IdTokenError("id token: issued by another issuer")
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != client_id:
        raise IdTokenError("id token: authorized party (`azp`) is not this client")
    current = time.time() if now is None else now
    if _number(claims, "exp") + leeway <= current:
        raise IdTokenError("id token: expired")
    issued = _number(claims, "iat")
    if issued - leeway > current:
        raise IdTokenError("id token: issued in the future")
    if issued + max_age + leeway < current:
        raise IdTokenError("id token: issued too long ago")
    if "nbf" in claims and _number(claims, "nbf") - leeway > current:
        raise IdTokenError("id token: not valid yet")
    got_nonce = claims.get("nonce")
    if not isinstance(got_nonce, str) or not hmac.compare_digest(
        got_nonce.encode(), nonce.encode()
    ):
        raise IdTokenError("id token: the nonce is not this sign-in's")
    subject = claims["sub"]
    if (
        not isinstance(subject, str)
        or not 1 <= len(subject) <= MAX_SUBJECT_CHARS
        or not subject.isascii()
        or not subject.isprintable()
    ):
        raise IdTokenError("id token: `sub` must be 1-255 printable ASCII characters")
    return IdTokenClaims(
        subject=subject,
        name=_short_text(claims, "name"),
        preferred_username=_short_text(claims, "preferred_username"),
        email=_short_text(claims, "email"),
        email_verified=claims.get("email_verified") is True,
    )


def identity_value(issuer: str, subject: str, *, max_chars: int) -> str:
    """The identity's uniqueness key: ``issuer|sub`` (Core 1.0, section 5.7).

    A subject too long for the column is replaced by its SHA-256; the issuer
    stays readable, so a provider's identities can still be found by prefix.
    """
    value = f"{issuer}|{subject}"
    if len(value) <= max_chars:
        return value
    return f"{issuer}|sha256:{hashlib.sha256(subject.encode()).hexdigest()}"
