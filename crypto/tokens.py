"""Access tokens (EdDSA JWTs, RFC 9068 profile) and opaque refresh tokens.

Only ``EdDSA`` is accepted, whatever the token's header says, so ``alg: none``
and HS256-signed-with-the-public-key forgeries fail. ``exp``, ``nbf``, ``iat``,
``iss``, ``aud`` and the ``at+jwt`` type are all checked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from config.errors import AuthenticationError

ALGORITHM = "EdDSA"
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a JWT type, not a secret
REFRESH_TOKEN_BYTES = 32
# Access tokens verified recently, whose claims are reused when the same token
# comes again (a client sends one token with every request until it expires):
# parsing and an Ed25519 verification cost about 0.35 ms a request.
VERIFIED_CACHE_SIZE = 4096


class TokenExpiredError(AuthenticationError):
    code = "token_expired"


class InvalidTokenError(AuthenticationError):
    code = "invalid_token"


class UnknownKeyError(InvalidTokenError):
    """The token names a key this verifier does not hold (maybe a newer one)."""


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    session_id: str
    expires_at: int
    token_id: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """A stable ``kid``: the RFC 7638 JWK thumbprint of the public key."""
    x = _b64url(raw_public_key(key))
    canonical = f'{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}'
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def public_jwk(key: Ed25519PublicKey) -> dict[str, str]:
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64url(raw_public_key(key)),
        "kid": key_id(key),
        "alg": ALGORITHM,
        "use": "sig",
    }


class AccessTokenIssuer:
    """Signs access tokens with the current key."""

    def __init__(self, key: Ed25519PrivateKey, *, issuer: str, audience: str, ttl: int):
        self.set_key(key)
        self._issuer = issuer
        self._audience = audience
        self.ttl = ttl

    def set_key(self, key: Ed25519PrivateKey) -> None:
        """Sign with ``key`` from now on (key rotation)."""
        self._key = key
        self._kid = key_id(key.public_key())
        header = {"alg": ALGORITHM, "kid": self._kid, "typ": ACCESS_TOKEN_TYPE}
        self._header_b64 = _b64url(orjson.dumps(header))

    @property
    def kid(self) -> str:
        return self._kid

    def issue(self, *, user_id: str, session_id: str, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": user_id,
            "sid": session_id,
            "iat": issued,
            "nbf": issued,
            "exp": issued + self.ttl,
            "jti": uuid.uuid4().hex,
        }
        # RFC 7515 compact serialization, written directly: the sign-in hot path
        # pays for PyJWT's generality otherwise. Verification stays with PyJWT.
        signing_input = f"{self._header_b64}.{_b64url(orjson.dumps(claims))}"
        signature = self._key.sign(signing_input.encode())
        return f"{signing_input}.{_b64url(signature)}"


class AccessTokenVerifier:
    """Verifies access tokens against a set of public keys selected by ``kid``."""

    def __init__(
        self,
        keys: list[Ed25519PublicKey],
        *,
        issuer: str,
        audience: str,
        leeway: int = 5,
    ):
        self._verified: OrderedDict[str, AccessClaims] = OrderedDict()
        self._keys: dict[str, Ed25519PublicKey] = {}
        self.set_keys(keys)
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway

    def set_keys(self, keys: list[Ed25519PublicKey]) -> None:
        """Accept tokens signed by exactly these keys (key rotation)."""
        keys_by_id = {key_id(key): key for key in keys}
        if not keys_by_id.keys() >= self._keys.keys():
            self._verified.clear()  # a key left: its tokens must fail from now on
        self._keys = keys_by_id

    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(key) for key in self._keys.values()]}

    def verify(self, token: str, *, now: float | None = None) -> AccessClaims:
        if not isinstance(token, str) or not token or len(token) > 4096:
            raise InvalidTokenError("access token is missing or malformed")
        if now is None:
            claims = self._verified.get(token)
            if claims is not None:
                if claims.expires_at + self._leeway <= time.time():
                    del self._verified[token]
                    raise TokenExpiredError("access token has expired; refresh it")
                self._verified.move_to_end(token)
                return claims
            claims = self._verify(token, None)
            self._verified[token] = claims
            if len(self._verified) > VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)
            return claims
        return self._verify(token, now)

    def _verify(self, token: str, now: float | None) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidTokenError("access token is malformed") from None
        if header.get("alg") != ALGORITHM or header.get("typ") != ACCESS_TOKEN_TYPE:
            raise InvalidTokenError("access token has the wrong algorithm or type")
        key = self._keys.get(str(header.get("kid")))
        if key is None:
            raise UnknownKeyError("access token was signed by an unknown key")
        options: Any = {"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "sid"]}
        if now is not None:
            options["verify_exp"] = False
            options["verify_nbf"] = False
            options["verify_iat"] = False
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options=options,
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpiredError("access token has expired; refresh it") from None
        except jwt.PyJWTError as exc:
            raise InvalidTokenError(f"access token is invalid: {exc}") from None
        if now is not None:
            if claims["exp"] + self._leeway <= now:
                raise TokenExpiredError("access token has expired; refresh it")
            if claims["nbf"] - self._leeway > now:
                raise InvalidTokenError("access token is not valid yet")
        return AccessClaims(
            user_id=str(claims["sub"]),
            session_id=str(claims["sid"]),
            expires_at=int(claims["exp"]),
            token_id=str(claims.get("jti", "")),
        )


def new_refresh_token() -> str:
    """An opaque 256-bit refresh token for the client; only its hash is stored."""
    return _b64url(secrets.token_bytes(REFRESH_TOKEN_BYTES))


def hash_refresh_token(token: str) -> str:
    # A plain SHA-256 suffices: the token has 256 bits of entropy, so no
    # dictionary or brute-force attack on the stored hash is possible.
    return hashlib.sha256(token.encode()).hexdigest()


def constant_time_equal(a: str | bytes, b: str | bytes) -> bool:
    a_bytes = a.encode() if isinstance(a, str) else a
    b_bytes = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a_bytes, b_bytes)
