"""One-time codes for phone sign-in: generated from the OS CSPRNG, stored keyed-hashed."""

from __future__ import annotations

import hashlib
import hmac
import secrets

OTP_DIGITS = 6


def new_otp() -> str:
    """Six uniformly random digits (``secrets`` draws from the OS CSPRNG)."""
    return f"{secrets.randbelow(10**OTP_DIGITS):0{OTP_DIGITS}d}"


def hash_otp(secret: bytes, request_id: str, code: str) -> str:
    """Bind the code to its start request so a code never verifies another request."""
    return hmac.new(secret, f"otp\x00{request_id}\x00{code}".encode(), hashlib.sha256).hexdigest()


def verify_otp(secret: bytes, request_id: str, code: str, expected_hash: str) -> bool:
    return hmac.compare_digest(hash_otp(secret, request_id, code), expected_hash)
