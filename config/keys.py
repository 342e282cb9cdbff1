"""Server key material: loaded from settings or generated once under ``keys_dir``.

Several processes on one machine may start at the same moment; a key file is
written to a private temporary name and hard-linked into place, so exactly one
generated key wins and every process reads that one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from config.errors import ConfigurationError
from config.settings import AuthSettings

JWT_KEY_FILE = "jwt-ed25519.pem"
CA_KEY_FILE = "ca-ed25519.pem"
PEPPER_FILE = "password-pepper"
SERVER_SECRET_FILE = "server-secret"  # noqa: S105 - a file name


@dataclass(frozen=True)
class ServerKeys:
    jwt_private_key: Ed25519PrivateKey
    server_secret: bytes
    ca_private_key: Ed25519PrivateKey
    password_pepper: bytes


def load_server_keys(settings: AuthSettings) -> ServerKeys:
    """The JWT signing key and the server secret, creating missing ones on disk."""
    if settings.jwt_private_key is not None:
        pem = settings.jwt_private_key.get_secret_value().encode()
        jwt_key = _parse_ed25519(pem, "PARLEY_AUTH_JWT_PRIVATE_KEY")
    else:
        pem = _read_or_create(settings.keys_dir / JWT_KEY_FILE, _new_ed25519_pem)
        jwt_key = _parse_ed25519(pem, str(settings.keys_dir / JWT_KEY_FILE))
    if settings.server_secret is not None:
        secret = settings.server_secret.get_secret_value().encode()
        if len(secret) < 32:
            raise ConfigurationError("PARLEY_AUTH_SERVER_SECRET: must be at least 32 characters")
    else:
        path = settings.keys_dir / SERVER_SECRET_FILE
        secret = _read_or_create(path, lambda: secrets.token_hex(32).encode()).strip()
    if settings.ca_private_key is not None:
        ca_pem = settings.ca_private_key.get_secret_value().encode()
        ca_key = _parse_ed25519(ca_pem, "PARLEY_AUTH_CA_PRIVATE_KEY")
    else:
        ca_pem = _read_or_create(settings.keys_dir / CA_KEY_FILE, _new_ed25519_pem)
        ca_key = _parse_ed25519(ca_pem, str(settings.keys_dir / CA_KEY_FILE))
    if settings.password_pepper is not None:
        pepper = settings.password_pepper.get_secret_value().encode()
        if len(pepper) < 32:
            raise ConfigurationError("PARLEY_AUTH_PASSWORD_PEPPER: must be at least 32 characters")
    else:
        path = settings.keys_dir / PEPPER_FILE
        pepper = _read_or_create(path, lambda: secrets.token_hex(32).encode()).strip()
    return ServerKeys(
        jwt_private_key=jwt_key,
        server_secret=secret,
        ca_private_key=ca_key,
        password_pepper=pepper,
    )


def _new_ed25519_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _parse_ed25519(pem: bytes, source: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        # TypeError: the PEM is passphrase-protected; Parley needs it unencrypted.
        raise ConfigurationError(f"{source}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"{source}: must be an Ed25519 private key")
    return key


def _read_or_create(path: Path, make: Callable[[], bytes]) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(make())
        # Another process may win the race; then its key is the one to use.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes()
