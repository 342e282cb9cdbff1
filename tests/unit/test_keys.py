"""Server key material: generated once on disk, or taken from settings."""

from __future__ import annotations

import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from config.errors import ConfigurationError
from config.keys import (
    CA_KEY_FILE,
    JWT_KEY_FILE,
    PEPPER_FILE,
    SERVER_SECRET_FILE,
    ServerKeys,
    load_server_keys,
)
from config.settings import AuthSettings
from crypto.tokens import raw_public_key

ALL_KEY_FILES = sorted([JWT_KEY_FILE, SERVER_SECRET_FILE, CA_KEY_FILE, PEPPER_FILE])


def public_bytes(keys: ServerKeys) -> bytes:
    return raw_public_key(keys.jwt_private_key.public_key())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def pem_of(key: Ed25519PrivateKey, encryption: serialization.KeySerializationEncryption) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


def test_generates_private_files(keys_dir: Path) -> None:
    """A fresh keys_dir gets the key and secret files, mode 0600, in a directory of mode 0700."""
    keys = load_server_keys(AuthSettings(keys_dir=keys_dir))
    assert isinstance(keys.jwt_private_key, Ed25519PrivateKey)
    assert len(keys.server_secret) >= 32
    assert mode(keys_dir) == 0o700
    assert mode(keys_dir / JWT_KEY_FILE) == 0o600
    assert mode(keys_dir / SERVER_SECRET_FILE) == 0o600
    assert sorted(p.name for p in keys_dir.iterdir()) == ALL_KEY_FILES


def test_second_load_returns_the_same_keys(keys_dir: Path) -> None:
    """Loading again from the same keys_dir returns the same signing key and secret."""
    first = load_server_keys(AuthSettings(keys_dir=keys_dir))
    second = load_server_keys(AuthSettings(keys_dir=keys_dir))
    assert public_bytes(first) == public_bytes(second)
    assert first.server_secret == second.server_secret


def test_jwt_key_from_settings_is_used_instead_of_file(keys_dir: Path) -> None:
    """A PEM in jwt_private_key is the signing key, and no key file is generated."""
    configured = Ed25519PrivateKey.generate()
    settings = AuthSettings(
        keys_dir=keys_dir,
        jwt_private_key=SecretStr(pem_of(configured, serialization.NoEncryption())),
    )
    keys = load_server_keys(settings)
    assert public_bytes(keys) == raw_public_key(configured.public_key())
    assert not (keys_dir / JWT_KEY_FILE).exists()


def test_server_secret_from_settings_is_used(keys_dir: Path) -> None:
    """A server_secret of 32+ characters is used as is and no secret file is generated."""
    secret = "x" * 32
    keys = load_server_keys(AuthSettings(keys_dir=keys_dir, server_secret=SecretStr(secret)))
    assert keys.server_secret == secret.encode()
    assert not (keys_dir / SERVER_SECRET_FILE).exists()


@pytest.mark.parametrize(
    "value",
    [
        "hello",
        "",
        "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n",
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    ],
    ids=["word", "empty", "bad-body", "public-key"],
)
def test_non_pem_jwt_key_names_variable(keys_dir: Path, value: str) -> None:
    """A jwt_private_key that is not a PEM private key raises naming PARLEY_AUTH_JWT_PRIVATE_KEY."""
    settings = AuthSettings(keys_dir=keys_dir, jwt_private_key=SecretStr(value))
    with pytest.raises(ConfigurationError, match="PARLEY_AUTH_JWT_PRIVATE_KEY"):
        load_server_keys(settings)


def test_non_ed25519_jwt_key_names_variable(keys_dir: Path) -> None:
    """A PEM private key of another type (P-256) raises naming PARLEY_AUTH_JWT_PRIVATE_KEY."""
    pem = (
        generate_private_key(SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    settings = AuthSettings(keys_dir=keys_dir, jwt_private_key=SecretStr(pem))
    with pytest.raises(ConfigurationError, match="PARLEY_AUTH_JWT_PRIVATE_KEY"):
        load_server_keys(settings)


def test_encrypted_jwt_key_names_variable(keys_dir: Path) -> None:
    """A passphrase-protected PEM raises ConfigurationError naming PARLEY_AUTH_JWT_PRIVATE_KEY."""
    pem = pem_of(Ed25519PrivateKey.generate(), serialization.BestAvailableEncryption(b"pw"))
    settings = AuthSettings(keys_dir=keys_dir, jwt_private_key=SecretStr(pem))
    # BUG: config/keys.py _parse_ed25519 catches only ValueError, but
    # load_pem_private_key(pem, password=None) raises TypeError ("Password was not given but
    # private key is encrypted") for an encrypted key, so start-up dies with a bare TypeError
    # that names no variable.
    with pytest.raises(ConfigurationError, match="PARLEY_AUTH_JWT_PRIVATE_KEY"):
        load_server_keys(settings)


@pytest.mark.parametrize("length", [0, 1, 31])
def test_short_server_secret_names_variable(keys_dir: Path, length: int) -> None:
    """A server_secret shorter than 32 characters raises naming PARLEY_AUTH_SERVER_SECRET."""
    settings = AuthSettings(keys_dir=keys_dir, server_secret=SecretStr("s" * length))
    with pytest.raises(ConfigurationError, match="PARLEY_AUTH_SERVER_SECRET"):
        load_server_keys(settings)


def test_corrupt_key_file_is_reported(keys_dir: Path) -> None:
    """A key file on disk that is not PEM raises ConfigurationError naming the file."""
    keys_dir.mkdir(mode=0o700)
    (keys_dir / JWT_KEY_FILE).write_bytes(b"not a key")
    with pytest.raises(ConfigurationError, match=JWT_KEY_FILE):
        load_server_keys(AuthSettings(keys_dir=keys_dir))


def test_concurrent_first_loads_agree(keys_dir: Path) -> None:
    """Eight threads loading keys from a fresh dir at once all get the same key and secret."""
    workers = 8
    barrier = threading.Barrier(workers)

    def load() -> ServerKeys:
        barrier.wait(timeout=10)
        return load_server_keys(AuthSettings(keys_dir=keys_dir))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = [f.result(timeout=30) for f in [pool.submit(load) for _ in range(workers)]]
    assert len({public_bytes(keys) for keys in results}) == 1
    assert len({keys.server_secret for keys in results}) == 1
    # The on-disk key is the one everybody got, and no temporary files are left behind.
    assert public_bytes(load_server_keys(AuthSettings(keys_dir=keys_dir))) == public_bytes(
        results[0]
    )
    assert sorted(p.name for p in keys_dir.iterdir()) == ALL_KEY_FILES
