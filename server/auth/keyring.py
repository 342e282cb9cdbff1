"""Access-token keys with rotation (seed 001 tokens; RFC 7517 key sets).

``keys_dir`` holds the current signing key (``jwt-ed25519.pem``) and retired
ones (``jwt-ed25519.retired-<unix time>.pem``). ``parley keys rotate`` retires
the current key and makes a new one; every node re-reads the directory every
``PARLEY_AUTH_KEY_RELOAD_INTERVAL`` seconds (and at once when a token names a
key it has not seen), signs with the new key, and keeps accepting a retired
key until every token it signed has expired. With keys from the environment,
``PARLEY_AUTH_JWT_RETIRED_PUBLIC_KEYS`` lists the retired public keys.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from config.errors import ConfigurationError
from config.keys import JWT_KEY_FILE
from config.settings import AuthSettings, split_list
from crypto.tokens import (
    AccessClaims,
    AccessTokenIssuer,
    AccessTokenVerifier,
    UnknownKeyError,
    key_id,
)

log = logging.getLogger(__name__)

_RETIRED = re.compile(r"^jwt-ed25519\.retired-(\d+)\.pem$")
# A retired key verifies for the access-token lifetime plus this margin (clock skew).
RETIREMENT_MARGIN = 300
# Reload at most this often when tokens name unknown keys (forged kids must not hammer the disk).
UNKNOWN_KID_RELOAD_SECONDS = 5.0


@dataclass(frozen=True)
class RetiredKey:
    public_key: Ed25519PublicKey
    retired_at: int


def _load_private(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"{path}: not an Ed25519 private key")
    return key


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def retired_keys(
    keys_dir: Path, *, keep_seconds: int, now: float | None = None
) -> list[RetiredKey]:
    """Retired keys in ``keys_dir`` still within their verification window."""
    now = time.time() if now is None else now
    found: list[RetiredKey] = []
    if not keys_dir.is_dir():
        return found
    for path in keys_dir.iterdir():
        match = _RETIRED.match(path.name)
        if match and now - int(match.group(1)) <= keep_seconds:
            try:
                found.append(RetiredKey(_load_private(path).public_key(), int(match.group(1))))
            except (OSError, ValueError, ConfigurationError):
                log.warning("unreadable retired key %s skipped", path.name)
    return found


def rotate_key(settings: AuthSettings, *, now: float | None = None) -> str:
    """Retire the current signing key, make a new one, prune expired ones; the new kid.

    There is a current key file at every instant: the old key is hard-linked to
    its retired name first, then the new key replaces the current file atomically.
    """
    if settings.jwt_private_key is not None:
        raise ConfigurationError(
            "PARLEY_AUTH_JWT_PRIVATE_KEY is set: rotate by setting a new key and listing the "
            "old public key in PARLEY_AUTH_JWT_RETIRED_PUBLIC_KEYS"
        )
    now = time.time() if now is None else now
    keys_dir = settings.keys_dir
    current = keys_dir / JWT_KEY_FILE
    if not current.exists():
        raise ConfigurationError(f"{current}: no current key to rotate (start Parley once first)")
    retired = keys_dir / f"jwt-ed25519.retired-{int(now)}.pem"
    if not retired.exists():
        os.link(current, retired)
    new_key = Ed25519PrivateKey.generate()
    tmp = keys_dir / f".{JWT_KEY_FILE}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(_pem(new_key))
    os.replace(tmp, current)
    keep = settings.access_token_ttl + RETIREMENT_MARGIN
    for path in keys_dir.iterdir():
        match = _RETIRED.match(path.name)
        if match and now - int(match.group(1)) > keep:
            path.unlink(missing_ok=True)
    return key_id(new_key.public_key())


class KeyRing:
    """The issuer and verifier of this node, kept in step with the key directory."""

    def __init__(
        self,
        settings: AuthSettings,
        current: Ed25519PrivateKey,
        issuer: AccessTokenIssuer,
        verifier: AccessTokenVerifier,
    ) -> None:
        self._settings = settings
        self.issuer = issuer
        self.verifier = verifier
        self._current = current
        self._last_unknown_reload = 0.0
        self._env_retired = [
            Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(k + "=" * (-len(k) % 4)))
            for k in split_list(settings.jwt_retired_public_keys)
        ]
        self._apply(current, self._retired())

    def _retired(self) -> list[Ed25519PublicKey]:
        if self._settings.jwt_private_key is not None:
            return list(self._env_retired)
        keep = self._settings.access_token_ttl + RETIREMENT_MARGIN
        return [r.public_key for r in retired_keys(self._settings.keys_dir, keep_seconds=keep)]

    def _apply(self, current: Ed25519PrivateKey, retired: list[Ed25519PublicKey]) -> None:
        self._current = current
        self.issuer.set_key(current)
        self.verifier.set_keys([current.public_key(), *retired])

    def reload(self) -> None:
        """Re-read the key directory (no-op when keys come from the environment)."""
        if self._settings.jwt_private_key is not None:
            return
        try:
            current = _load_private(self._settings.keys_dir / JWT_KEY_FILE)
        except (OSError, ValueError, ConfigurationError):
            log.warning("JWT key reload failed; keeping the keys in use", exc_info=True)
            return
        before = self.issuer.kid
        self._apply(current, self._retired())
        if self.issuer.kid != before:
            log.info("JWT signing key rotated", extra={"kid": self.issuer.kid})

    def verify(self, token: str) -> AccessClaims:
        """Verify, re-reading the keys once if the token names a key not seen yet."""
        try:
            return self.verifier.verify(token)
        except UnknownKeyError:
            now = time.monotonic()
            if now - self._last_unknown_reload < UNKNOWN_KID_RELOAD_SECONDS:
                raise
            self._last_unknown_reload = now
            self.reload()
            return self.verifier.verify(token)
