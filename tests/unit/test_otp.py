"""One-time sign-in codes: generation and request-bound keyed hashes."""

from __future__ import annotations

import re
from collections import Counter

from crypto.otp import OTP_DIGITS, hash_otp, new_otp, verify_otp

SECRET = b"s" * 32


def test_new_otp_is_six_ascii_digits() -> None:
    """new_otp returns exactly six ASCII digits, leading zeros kept."""
    assert OTP_DIGITS == 6
    for _ in range(500):
        assert re.fullmatch(r"[0-9]{6}", new_otp())


def test_new_otp_first_digit_is_not_skewed() -> None:
    """Over 2000 codes every first digit 0-9 appears about a tenth of the time."""
    counts = Counter(new_otp()[0] for _ in range(2000))
    assert set(counts) == set("0123456789")
    # Expected 200 each, standard deviation ~13.4: 120..280 is six sigma, so never flaky,
    # yet a code that never starts with 0 (e.g. no zero-padding) or favours one digit fails.
    for digit, count in counts.items():
        assert 120 <= count <= 280, (digit, count)


def test_new_otp_values_vary() -> None:
    """Codes are not repeated constants: 200 draws give well over 150 distinct values."""
    assert len({new_otp() for _ in range(200)}) > 150


def test_right_code_verifies() -> None:
    """The code that was hashed for a request verifies for that request."""
    code = new_otp()
    stored = hash_otp(SECRET, "req-1", code)
    assert verify_otp(SECRET, "req-1", code, stored) is True


def test_wrong_code_is_refused() -> None:
    """Another code does not verify against the stored hash."""
    stored = hash_otp(SECRET, "req-1", "123456")
    assert verify_otp(SECRET, "req-1", "123457", stored) is False
    assert verify_otp(SECRET, "req-1", "", stored) is False


def test_code_is_bound_to_its_request_id() -> None:
    """The right code presented for another request id does not verify."""
    stored = hash_otp(SECRET, "req-1", "123456")
    assert verify_otp(SECRET, "req-2", "123456", stored) is False


def test_request_id_and_code_cannot_be_shifted() -> None:
    """Moving characters between request id and code changes the hash (fields are separated)."""
    assert hash_otp(SECRET, "req-11", "23456") != hash_otp(SECRET, "req-1", "123456")


def test_hash_depends_on_server_secret() -> None:
    """A hash made with another server secret does not verify."""
    stored = hash_otp(b"t" * 32, "req-1", "123456")
    assert verify_otp(SECRET, "req-1", "123456", stored) is False


def test_hash_is_deterministic_hex() -> None:
    """hash_otp is stable for the same inputs and is a 64-char hex HMAC-SHA256."""
    first = hash_otp(SECRET, "req-1", "000000")
    assert first == hash_otp(SECRET, "req-1", "000000")
    assert re.fullmatch(r"[0-9a-f]{64}", first)
