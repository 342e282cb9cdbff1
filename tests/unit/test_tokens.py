"""Access tokens (EdDSA JWTs, RFC 9068 profile) and opaque refresh tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from crypto.tokens import (
    AccessClaims,
    AccessTokenIssuer,
    AccessTokenVerifier,
    InvalidTokenError,
    TokenExpiredError,
    hash_refresh_token,
    key_id,
    new_refresh_token,
    raw_public_key,
)

ISSUER = "parley"
AUDIENCE = "parley"
TTL = 900
LEEWAY = 5
# A fixed clock so expiry tests never sleep and never depend on the wall clock.
T0 = 1_700_000_000


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(obj: dict[str, Any]) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def make_issuer(
    key: Ed25519PrivateKey, *, issuer: str = ISSUER, audience: str = AUDIENCE
) -> AccessTokenIssuer:
    return AccessTokenIssuer(key, issuer=issuer, audience=audience, ttl=TTL)


def make_verifier(*keys: Ed25519PublicKey) -> AccessTokenVerifier:
    return AccessTokenVerifier(list(keys), issuer=ISSUER, audience=AUDIENCE, leeway=LEEWAY)


def valid_claims(now: int = T0) -> dict[str, Any]:
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "sid": "session-1",
        "iat": now,
        "nbf": now,
        "exp": now + TTL,
        "jti": "f" * 32,
    }


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def issuer(key: Ed25519PrivateKey) -> AccessTokenIssuer:
    return make_issuer(key)


@pytest.fixture
def verifier(key: Ed25519PrivateKey) -> AccessTokenVerifier:
    return make_verifier(key.public_key())


def assert_invalid(verifier: AccessTokenVerifier, token: Any, *, now: float | None = None) -> None:
    with pytest.raises(InvalidTokenError) as excinfo:
        verifier.verify(token, now=now)
    assert not isinstance(excinfo.value, TokenExpiredError)
    assert excinfo.value.code == "invalid_token"
    assert excinfo.value.status == 401


# --- round trip -------------------------------------------------------------------------------


def test_round_trip_returns_user_and_session(
    issuer: AccessTokenIssuer, verifier: AccessTokenVerifier
) -> None:
    """A freshly issued token verifies and carries the user id and session id it was issued for."""
    token = issuer.issue(user_id="user-42", session_id="session-7")
    claims = verifier.verify(token)
    assert isinstance(claims, AccessClaims)
    assert claims.user_id == "user-42"
    assert claims.session_id == "session-7"
    assert claims.token_id


def test_round_trip_with_explicit_clock(
    issuer: AccessTokenIssuer, verifier: AccessTokenVerifier
) -> None:
    """With an explicit clock, a token is valid just before exp and reports exp = iat + ttl."""
    token = issuer.issue(user_id="u", session_id="s", now=T0)
    claims = verifier.verify(token, now=T0 + TTL - 1)
    assert claims.expires_at == T0 + TTL


def test_issued_header_is_eddsa_at_jwt_with_kid(
    key: Ed25519PrivateKey, issuer: AccessTokenIssuer
) -> None:
    """The issued header says alg EdDSA, typ at+jwt (RFC 9068 §2.1) and the key's kid."""
    header = jwt.get_unverified_header(issuer.issue(user_id="u", session_id="s"))
    assert header["alg"] == "EdDSA"
    assert header["typ"] == "at+jwt"
    assert header["kid"] == key_id(key.public_key())


def test_each_token_gets_its_own_jti(
    issuer: AccessTokenIssuer, verifier: AccessTokenVerifier
) -> None:
    """Two tokens issued for the same session at the same instant have different token ids."""
    first = verifier.verify(issuer.issue(user_id="u", session_id="s", now=T0), now=T0)
    second = verifier.verify(issuer.issue(user_id="u", session_id="s", now=T0), now=T0)
    assert first.token_id != second.token_id


# --- time checks ------------------------------------------------------------------------------


def test_expired_token_with_explicit_clock(
    issuer: AccessTokenIssuer, verifier: AccessTokenVerifier
) -> None:
    """A token verified after exp plus leeway raises TokenExpiredError with code token_expired."""
    token = issuer.issue(user_id="u", session_id="s", now=T0)
    with pytest.raises(TokenExpiredError) as excinfo:
        verifier.verify(token, now=T0 + TTL + LEEWAY + 1)
    assert excinfo.value.code == "token_expired"
    assert excinfo.value.status == 401


def test_expired_token_on_the_wall_clock(
    issuer: AccessTokenIssuer, verifier: AccessTokenVerifier
) -> None:
    """A token issued an hour ago (15 min ttl) is refused as expired when no clock is passed."""
    token = issuer.issue(user_id="u", session_id="s", now=time.time() - 3600)
    with pytest.raises(TokenExpiredError) as excinfo:
        verifier.verify(token)
    assert excinfo.value.code == "token_expired"


def test_token_is_refused_at_exactly_exp(key: Ed25519PrivateKey) -> None:
    """With zero leeway a token is refused at the instant now == exp (RFC 7519 §4.1.4)."""
    verifier = AccessTokenVerifier([key.public_key()], issuer=ISSUER, audience=AUDIENCE, leeway=0)
    token = make_issuer(key).issue(user_id="u", session_id="s", now=T0)
    assert verifier.verify(token, now=T0 + TTL - 1).user_id == "u"
    with pytest.raises(TokenExpiredError):
        verifier.verify(token, now=T0 + TTL)


def test_not_yet_valid_with_explicit_clock(
    issuer: AccessTokenIssuer, verifier: AccessTokenVerifier
) -> None:
    """A token whose nbf is a minute in the future is refused as invalid (not as expired)."""
    token = issuer.issue(user_id="u", session_id="s", now=T0 + 60)
    assert_invalid(verifier, token, now=T0)


def test_not_yet_valid_within_leeway_is_accepted(
    issuer: AccessTokenIssuer, verifier: AccessTokenVerifier
) -> None:
    """A token whose nbf is within the leeway (clock skew) is accepted."""
    token = issuer.issue(user_id="u", session_id="s", now=T0 + LEEWAY)
    assert verifier.verify(token, now=T0).user_id == "u"


def test_not_yet_valid_on_the_wall_clock(
    issuer: AccessTokenIssuer, verifier: AccessTokenVerifier
) -> None:
    """A token with nbf an hour in the future is refused when no clock is passed."""
    token = issuer.issue(user_id="u", session_id="s", now=time.time() + 3600)
    assert_invalid(verifier, token)


# --- claims -----------------------------------------------------------------------------------


def test_wrong_audience_is_refused(key: Ed25519PrivateKey, verifier: AccessTokenVerifier) -> None:
    """A correctly signed token for another audience is refused with invalid_token."""
    token = make_issuer(key, audience="other-service").issue(user_id="u", session_id="s")
    assert_invalid(verifier, token)


def test_wrong_issuer_is_refused(key: Ed25519PrivateKey, verifier: AccessTokenVerifier) -> None:
    """A correctly signed token from another issuer is refused with invalid_token."""
    token = make_issuer(key, issuer="evil").issue(user_id="u", session_id="s")
    assert_invalid(verifier, token)


@pytest.mark.parametrize("missing", ["exp", "iat", "nbf", "iss", "aud", "sub", "sid"])
def test_token_missing_a_required_claim_is_refused(
    key: Ed25519PrivateKey, verifier: AccessTokenVerifier, missing: str
) -> None:
    """A correctly signed token lacking a required claim is refused with invalid_token."""
    claims = valid_claims(int(time.time()))
    del claims[missing]
    headers = {"kid": key_id(key.public_key()), "typ": "at+jwt"}
    token = jwt.encode(claims, key, algorithm="EdDSA", headers=headers)
    assert_invalid(verifier, token)


# --- forgeries --------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(
    key: Ed25519PrivateKey, verifier: AccessTokenVerifier, alg: str
) -> None:
    """An unsigned token (alg none, empty signature) with valid claims is refused."""
    header = {"alg": alg, "typ": "at+jwt", "kid": key_id(key.public_key())}
    token = f"{b64url_json(header)}.{b64url_json(valid_claims(int(time.time())))}."
    assert_invalid(verifier, token)


def _public_key_secrets(public: Ed25519PublicKey) -> list[bytes]:
    raw = raw_public_key(public)
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return [raw, pem, b64url(raw).encode()]


@pytest.mark.parametrize("secret_form", [0, 1, 2], ids=["raw", "pem", "jwk-x"])
@pytest.mark.parametrize("header_alg", ["HS256", "EdDSA"])
def test_hs256_signed_with_public_key_is_refused(
    key: Ed25519PrivateKey, verifier: AccessTokenVerifier, secret_form: int, header_alg: str
) -> None:
    """An HMAC-SHA256 token keyed with the public key (key-confusion forgery) is refused."""
    public = key.public_key()
    secret = _public_key_secrets(public)[secret_form]
    header = {"alg": header_alg, "typ": "at+jwt", "kid": key_id(public)}
    signing_input = f"{b64url_json(header)}.{b64url_json(valid_claims(int(time.time())))}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    assert_invalid(verifier, f"{signing_input}.{b64url(signature)}")


def test_other_key_with_same_kid_is_refused(
    key: Ed25519PrivateKey, verifier: AccessTokenVerifier
) -> None:
    """A token signed by another Ed25519 key but claiming our kid fails signature verification."""
    attacker = Ed25519PrivateKey.generate()
    headers = {"kid": key_id(key.public_key()), "typ": "at+jwt"}
    token = jwt.encode(valid_claims(int(time.time())), attacker, algorithm="EdDSA", headers=headers)
    assert_invalid(verifier, token)


def test_unknown_kid_is_refused(verifier: AccessTokenVerifier) -> None:
    """A token from an issuer whose key the verifier does not know is refused."""
    stranger = make_issuer(Ed25519PrivateKey.generate())
    assert_invalid(verifier, stranger.issue(user_id="u", session_id="s"))


def test_missing_kid_is_refused(key: Ed25519PrivateKey, verifier: AccessTokenVerifier) -> None:
    """A correctly signed token without a kid header is refused."""
    token = jwt.encode(
        valid_claims(int(time.time())), key, algorithm="EdDSA", headers={"typ": "at+jwt"}
    )
    assert_invalid(verifier, token)


@pytest.mark.parametrize("typ", ["JWT", "jwt", "id+jwt", None])
def test_wrong_typ_is_refused(
    key: Ed25519PrivateKey, verifier: AccessTokenVerifier, typ: str | None
) -> None:
    """A correctly signed token whose typ is not at+jwt (e.g. an ID token) is refused."""
    headers: dict[str, Any] = {"kid": key_id(key.public_key())}
    if typ is not None:
        headers["typ"] = typ
    token = jwt.encode(valid_claims(int(time.time())), key, algorithm="EdDSA", headers=headers)
    if typ is None:
        # PyJWT adds typ "JWT" by default; strip it to test an absent typ.
        header_b64, rest = token.split(".", 1)
        header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
        header.pop("typ", None)
        token = f"{b64url_json(header)}.{rest}"
    assert_invalid(verifier, token)


def test_tampered_payload_is_refused(
    issuer: AccessTokenIssuer, verifier: AccessTokenVerifier
) -> None:
    """Changing the payload of a genuine token (another sub) breaks its signature."""
    header_b64, _, signature = issuer.issue(user_id="victim", session_id="s").split(".")
    forged_payload = b64url_json({**valid_claims(int(time.time())), "sub": "attacker"})
    assert_invalid(verifier, f"{header_b64}.{forged_payload}.{signature}")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b.c",
        "...",
        "a.b",
        "é.é.é",
        "\x00",
        "eyJ.eyJ.",
        b64url(b"[1,2]") + ".e30.AA",
        b64url(b'"string"') + ".e30.AA",
        b64url(b"\xff\xfe") + ".e30.AA",
        b64url(b"[" * 3000) + ".e30.AA",
        "x" * 10 * 1024,
        "a." * 5000,
    ],
    ids=lambda token: repr(token[:20]) + f"[{len(token)}]",
)
def test_garbage_raises_invalid_token_only(verifier: AccessTokenVerifier, token: str) -> None:
    """Malformed, empty and oversized strings raise InvalidTokenError, never another exception."""
    assert_invalid(verifier, token)


@pytest.mark.parametrize("token", [None, b"a.b.c", 42])
def test_non_string_raises_invalid_token(verifier: AccessTokenVerifier, token: object) -> None:
    """A token that is not a str at all raises InvalidTokenError."""
    assert_invalid(verifier, token)


def test_truncated_genuine_token_is_refused(
    issuer: AccessTokenIssuer, verifier: AccessTokenVerifier
) -> None:
    """A genuine token with its signature cut short is refused."""
    assert_invalid(verifier, issuer.issue(user_id="u", session_id="s")[:-4])


# --- JWKS and rotation ------------------------------------------------------------------------


def test_jwks_describes_the_signing_key(
    key: Ed25519PrivateKey, issuer: AccessTokenIssuer, verifier: AccessTokenVerifier
) -> None:
    """The JWKS lists an OKP/Ed25519 key whose kid matches the token header kid (RFC 8037)."""
    token = issuer.issue(user_id="u", session_id="s")
    jwks = verifier.jwks()
    assert len(jwks["keys"]) == 1
    jwk = jwks["keys"][0]
    assert jwk["kty"] == "OKP"
    assert jwk["crv"] == "Ed25519"
    assert jwk["kid"] == jwt.get_unverified_header(token)["kid"]
    assert jwk["x"] == b64url(raw_public_key(key.public_key()))
    assert "d" not in jwk


def test_jwks_key_verifies_tokens_with_a_standard_client(
    issuer: AccessTokenIssuer, verifier: AccessTokenVerifier
) -> None:
    """A third-party client using only the published JWK can verify an issued token."""
    token = issuer.issue(user_id="user-9", session_id="s")
    public = jwt.PyJWK(verifier.jwks()["keys"][0])
    claims = jwt.decode(token, public, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)
    assert claims["sub"] == "user-9"


def test_kid_is_the_rfc7638_thumbprint() -> None:
    """key_id matches the JWK thumbprint of the RFC 8037 Appendix A.3 test key."""
    x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    public = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "="))
    assert key_id(public) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_rotation_accepts_tokens_of_old_and_new_key() -> None:
    """A verifier given [old, new] public keys accepts tokens from both issuers."""
    old_key, new_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    verifier = make_verifier(old_key.public_key(), new_key.public_key())
    old_token = make_issuer(old_key).issue(user_id="old-user", session_id="s1")
    new_token = make_issuer(new_key).issue(user_id="new-user", session_id="s2")
    assert verifier.verify(old_token).user_id == "old-user"
    assert verifier.verify(new_token).user_id == "new-user"
    assert {jwk["kid"] for jwk in verifier.jwks()["keys"]} == {
        key_id(old_key.public_key()),
        key_id(new_key.public_key()),
    }


def test_rotation_retiring_old_key_refuses_its_tokens() -> None:
    """Once the old public key is dropped, tokens it signed are refused."""
    old_key, new_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    old_token = make_issuer(old_key).issue(user_id="u", session_id="s")
    assert_invalid(make_verifier(new_key.public_key()), old_token)


def test_rotation_refuses_a_dropped_keys_token_verified_before() -> None:
    """A token verified (and remembered) under a key is refused once that key is dropped."""
    old_key, new_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    verifier = make_verifier(old_key.public_key(), new_key.public_key())
    old_token = make_issuer(old_key).issue(user_id="u", session_id="s")
    new_token = make_issuer(new_key).issue(user_id="v", session_id="t")
    assert verifier.verify(old_token).user_id == "u"
    assert verifier.verify(new_token).user_id == "v"
    verifier.set_keys([new_key.public_key()])
    assert_invalid(verifier, old_token)
    assert verifier.verify(new_token).user_id == "v"


# --- verified tokens remembered ---------------------------------------------------------------


def test_a_remembered_token_expires_on_time(
    issuer: AccessTokenIssuer, verifier: AccessTokenVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same token again is answered from memory, and refused once its exp (+ leeway) passes."""
    issued = time.time()
    token = issuer.issue(user_id="u", session_id="s", now=issued)
    first = verifier.verify(token)
    monkeypatch.setattr("crypto.tokens.jwt.decode", _no_decode)
    assert verifier.verify(token) is first  # not parsed or verified again
    monkeypatch.setattr("crypto.tokens.time.time", lambda: issued + TTL + LEEWAY)
    with pytest.raises(TokenExpiredError):
        verifier.verify(token)
    with pytest.raises(AssertionError, match="decoded again"):
        verifier.verify(token)  # forgotten: verified from scratch (and expired there too)


def _no_decode(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("decoded again")


def test_a_tampered_copy_of_a_remembered_token_is_refused(
    issuer: AccessTokenIssuer, verifier: AccessTokenVerifier
) -> None:
    token = issuer.issue(user_id="u", session_id="s")
    assert verifier.verify(token).user_id == "u"
    head, body, signature = token.split(".")
    forged = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    forged["sub"] = "someone-else"
    assert_invalid(verifier, f"{head}.{b64url_json(forged)}.{signature}")


def test_remembered_tokens_are_bounded(
    key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("crypto.tokens.VERIFIED_CACHE_SIZE", 3)
    verifier = make_verifier(key.public_key())
    tokens = [make_issuer(key).issue(user_id=f"u{i}", session_id="s") for i in range(5)]
    for token in tokens:
        verifier.verify(token)
    assert list(verifier._verified) == tokens[2:]


# --- refresh tokens ---------------------------------------------------------------------------


def test_refresh_tokens_are_distinct_url_safe_and_long() -> None:
    """new_refresh_token gives distinct URL-safe strings of at least 43 chars (256 bits)."""
    tokens = [new_refresh_token() for _ in range(200)]
    assert len(set(tokens)) == len(tokens)
    for token in tokens:
        assert len(token) >= 43
        assert re.fullmatch(r"[A-Za-z0-9_-]+", token), token


def test_refresh_token_hash_is_deterministic_sha256_hex() -> None:
    """hash_refresh_token is 64 lowercase hex chars and the same for the same token."""
    token = new_refresh_token()
    digest = hash_refresh_token(token)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert hash_refresh_token(token) == digest
    assert digest != token


def test_refresh_token_hash_differs_per_token() -> None:
    """Different refresh tokens hash to different values."""
    hashes = {hash_refresh_token(new_refresh_token()) for _ in range(100)}
    assert len(hashes) == 100
    assert hash_refresh_token("a") != hash_refresh_token("b")
