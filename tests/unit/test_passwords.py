"""Password hashing (argon2id over HMAC-SHA256 with a pepper) and strength rules."""

from __future__ import annotations

import hashlib
import hmac
import time
import unicodedata
from typing import Any

import argon2
import pytest

from config.errors import InvalidRequestError
from crypto.passwords import PasswordHasher, validate_password_strength

PEPPER_A = b"a" * 32
PEPPER_B = b"b" * 32
# Cheap parameters keep the suite fast; the default profile has its own test.
FAST: dict[str, int] = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    """A hasher with pepper A and cheap argon2 parameters."""
    return PasswordHasher(PEPPER_A, **FAST)


def test_right_password_verifies(hasher: PasswordHasher) -> None:
    """The password that was hashed verifies."""
    stored = hasher.hash("correct horse battery")
    assert hasher.verify(stored, "correct horse battery") is True


def test_wrong_password_returns_false(hasher: PasswordHasher) -> None:
    """A wrong password, or one differing by case or a trailing space, returns False."""
    stored = hasher.hash("correct horse battery")
    for wrong in ["correct horse batterY", "correct horse battery ", "", "x" * 10]:
        assert hasher.verify(stored, wrong) is False


def test_hash_is_argon2id_with_a_fresh_salt(hasher: PasswordHasher) -> None:
    """Hashes are argon2id PHC strings and two hashes of one password differ."""
    first, second = hasher.hash("same password"), hasher.hash("same password")
    assert first.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert first != second
    assert hasher.verify(first, "same password") and hasher.verify(second, "same password")


def test_argon2_input_is_the_hmac_of_the_password(hasher: PasswordHasher) -> None:
    """argon2id hashes HMAC-SHA256(pepper, password), never the password itself."""
    stored = hasher.hash("correct horse battery")
    plain = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    with pytest.raises(argon2.exceptions.VerifyMismatchError):
        plain.verify(stored, "correct horse battery")
    digest = hmac.new(PEPPER_A, b"correct horse battery", hashlib.sha256).digest()
    assert plain.verify(stored, digest) is True


def test_pepper_matters(hasher: PasswordHasher) -> None:
    """A hash made with pepper A does not verify with pepper B."""
    stored = hasher.hash("correct horse battery")
    assert PasswordHasher(PEPPER_B, **FAST).verify(stored, "correct horse battery") is False


@pytest.mark.parametrize("pepper", [b"", b"x" * 31, "y" * 32, None, bytearray(32)])
def test_short_or_non_bytes_pepper_is_refused(pepper: Any) -> None:
    """A pepper shorter than 32 bytes or not bytes raises ValueError."""
    with pytest.raises(ValueError, match="pepper"):
        PasswordHasher(pepper, **FAST)


def test_needs_rehash_after_parameters_change(hasher: PasswordHasher) -> None:
    """needs_rehash is False for current parameters and True after time_cost changes."""
    stored = hasher.hash("correct horse battery")
    assert hasher.needs_rehash(stored) is False
    stronger = PasswordHasher(PEPPER_A, **{**FAST, "time_cost": 2})
    assert stronger.needs_rehash(stored) is True
    assert stronger.verify(stored, "correct horse battery") is True


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "garbage",
        "$argon2id$v=19$m=1024,t=1,p=1$",
        "$2b$12$abcdefghijklmnopqrstuuL9N3ehkGFDhSwPOE3Yc1S6eF1EyVn6W",
        "$argon2id$v=19$m=1024,t=1,p=1$AAAA$BBBB",
        "x" * 10_240,
        None,
        b"bytes",
    ],
)
def test_corrupt_hash_returns_false_and_needs_rehash(hasher: PasswordHasher, stored: Any) -> None:
    """A corrupt or foreign stored hash makes verify False and needs_rehash True, never raising."""
    assert hasher.verify(stored, "correct horse battery") is False
    assert hasher.needs_rehash(stored) is True


def test_truncated_hash_returns_false(hasher: PasswordHasher) -> None:
    """A real hash cut short verifies as False instead of raising."""
    stored = hasher.hash("correct horse battery")
    for cut in (10, 30, len(stored) - 5):
        assert hasher.verify(stored[:cut], "correct horse battery") is False


@pytest.mark.parametrize("password", [None, 12345, b"correct horse battery", "x" * 100_000])
def test_odd_password_inputs_return_false(hasher: PasswordHasher, password: Any) -> None:
    """Non-string or absurdly long passwords make verify return False, not raise."""
    stored = hasher.hash("correct horse battery")
    assert hasher.verify(stored, password) is False


def test_unicode_passwords(hasher: PasswordHasher) -> None:
    """Non-ASCII passwords verify, and only the exact password does."""
    password = "pässwörd 🙂 日本語 пароль"
    stored = hasher.hash(password)
    assert hasher.verify(stored, password) is True
    assert hasher.verify(stored, password.replace("ö", "o")) is False


def test_composed_and_decomposed_accents_match(hasher: PasswordHasher) -> None:
    """NFC and NFD spellings of one password verify against each other (NIST NFKC)."""
    composed = unicodedata.normalize("NFC", "Crème brûlée 2026")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    assert hasher.verify(hasher.hash(composed), decomposed) is True


def test_lone_surrogate_never_raises(hasher: PasswordHasher) -> None:
    """A lone surrogate (legal in JSON) hashes and verifies without raising."""
    stored = hasher.hash("abc\ud800def12345")
    assert hasher.verify(stored, "abc\ud800def12345") is True
    assert hasher.verify(stored, "abc\ud801def12345") is False


def test_hash_refuses_non_strings(hasher: PasswordHasher) -> None:
    """hash() is for str passwords only; anything else is a programming error."""
    with pytest.raises(TypeError):
        hasher.hash(b"bytes")  # type: ignore[arg-type]


def test_dummy_hash_uses_the_same_parameters(hasher: PasswordHasher) -> None:
    """dummy_hash is an argon2id hash with the hasher's own parameters (same cost)."""
    assert hasher.dummy_hash.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert hasher.needs_rehash(hasher.dummy_hash) is False


@pytest.mark.parametrize("password", ["", "correct horse battery", None, "x" * 5000])
def test_verify_dummy_is_always_false(hasher: PasswordHasher, password: Any) -> None:
    """verify_dummy returns False for any input and never raises."""
    assert hasher.verify_dummy(password) is False


def test_verify_dummy_costs_about_a_real_verify() -> None:
    """An unknown account costs about as much argon2 time as a wrong password."""
    hasher = PasswordHasher(PEPPER_A, time_cost=2, memory_cost=16 * 1024, parallelism=1)
    stored = hasher.hash("correct horse battery")

    def fastest(call: Any) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return min(times)

    real = fastest(lambda: hasher.verify(stored, "wrong password!"))
    dummy = fastest(lambda: hasher.verify_dummy("wrong password!"))
    # Loose bounds so a busy machine never fails it; a skipped hash would be ~1000x faster.
    assert 0.3 < dummy / real < 3.0


def test_defaults_are_the_rfc9106_low_memory_profile() -> None:
    """Without overrides the hasher uses argon2id t=3, m=64 MiB, p=4 (RFC 9106 low memory)."""
    hasher = PasswordHasher(PEPPER_A)
    assert hasher.dummy_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    stored = hasher.hash("correct horse battery")
    assert hasher.verify(stored, "correct horse battery") is True


# --- strength ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    [
        "a" * 9 + "b",
        "correct horse battery staple",
        "x" * 127 + "y",
        "🙂🙃🙂🙃🙂🙃🙂🙃🙂🙃",
        "Tr0ub4dor&3x",
        "          .",
    ],
)
def test_acceptable_passwords(password: str) -> None:
    """Passwords of 10..128 characters that are not one repeated character pass."""
    validate_password_strength(password)


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("short1234", "shorter than 10"),
        ("", "shorter than 10"),
        ("x" * 128 + "y", "longer than 128"),
        ("a" * 10, "one character repeated"),
        ("🙂" * 20, "one character repeated"),
        ("abc\ud800defghij", "surrogate"),
        (None, "must be a string"),
        (b"bytes12345", "must be a string"),
    ],
)
def test_weak_passwords_name_the_rule(password: Any, rule: str) -> None:
    """Each failing rule raises InvalidRequestError code weak_password naming the rule."""
    with pytest.raises(InvalidRequestError, match=rule) as info:
        validate_password_strength(password)
    assert info.value.code == "weak_password"
    assert info.value.status == 422


def test_length_counts_characters_not_bytes() -> None:
    """Ten multi-byte characters are ten characters (NIST counts code points)."""
    validate_password_strength("日本語の長いパスワード")
    with pytest.raises(InvalidRequestError, match="shorter"):
        validate_password_strength("日本語パスワード")


def test_password_equal_to_login_or_email_is_refused() -> None:
    """A password equal to a forbidden value (login, e-mail) is refused case-insensitively."""
    forbidden = ["Alice.Example", "alice@example.org"]
    with pytest.raises(InvalidRequestError, match="login name or e-mail") as info:
        validate_password_strength("ALICE@EXAMPLE.ORG", forbidden=forbidden)
    assert info.value.code == "weak_password"
    validate_password_strength("alice@example.org!", forbidden=forbidden)
