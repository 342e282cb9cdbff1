"""Password hashing: argon2id over a peppered HMAC, and NIST 800-63B strength rules.

Seed 001 keeps a pepper out of the database; ARCHITECTURE.md section 4 turns
its fast-hash chain into ``argon2id(HMAC-SHA256(pepper, password))`` with
argon2's own random salt. A stolen database without the pepper cannot be
attacked offline at all, and with it only at argon2id's cost.

Every method here is CPU-bound and synchronous: call it through the bounded
thread pool (STYLE.md item 8), never on the event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
from collections.abc import Iterable
from typing import Final

from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.profiles import RFC_9106_LOW_MEMORY

from config.errors import InvalidRequestError

MIN_PEPPER_BYTES: Final = 32
MIN_PASSWORD_CHARS: Final = 10
MAX_PASSWORD_CHARS: Final = 128
# verify() answers False at once above this: no such password was ever accepted,
# and it bounds the NFKC work an attacker can ask for.
MAX_VERIFY_CHARS: Final = 1024


def _prepare(password: str) -> str:
    # NIST 800-63B 5.1.1.2: normalize Unicode (NFKC) so the same password typed on
    # two keyboards (composed vs decomposed accents) is the same secret.
    return unicodedata.normalize("NFKC", password)


class PasswordHasher:
    """argon2id of HMAC-SHA256(pepper, NFKC(password)), in argon2's PHC string format.

    The defaults are argon2-cffi's, which are RFC 9106's second recommended
    ("low memory") profile: argon2id, t=3, m=64 MiB, p=4, 16-byte salt,
    32-byte tag. Pass ``time_cost``/``memory_cost`` (KiB)/``parallelism`` to
    change them; ``needs_rehash`` then flags hashes made with other parameters.
    """

    def __init__(
        self,
        pepper: bytes,
        *,
        time_cost: int | None = None,
        memory_cost: int | None = None,
        parallelism: int | None = None,
    ) -> None:
        if not isinstance(pepper, bytes) or len(pepper) < MIN_PEPPER_BYTES:
            raise ValueError(f"the password pepper must be at least {MIN_PEPPER_BYTES} bytes")
        defaults = RFC_9106_LOW_MEMORY
        self._pepper = pepper
        self._argon2 = Argon2Hasher(
            time_cost=defaults.time_cost if time_cost is None else time_cost,
            memory_cost=defaults.memory_cost if memory_cost is None else memory_cost,
            parallelism=defaults.parallelism if parallelism is None else parallelism,
            hash_len=defaults.hash_len,
            salt_len=defaults.salt_len,
            type=Type.ID,
        )
        # Verified against when the account does not exist, so an unknown login
        # costs the same argon2 work as a wrong password (no user enumeration by timing).
        self.dummy_hash: str = self.hash(secrets.token_urlsafe(32))

    def _peppered(self, password: str) -> bytes:
        # surrogatepass: a lone surrogate (valid in JSON) must not crash verify().
        data = _prepare(password).encode("utf-8", "surrogatepass")
        return hmac.new(self._pepper, data, hashlib.sha256).digest()

    def hash(self, password: str) -> str:
        """A new ``$argon2id$...`` string with a fresh random salt."""
        if not isinstance(password, str):
            raise TypeError("password must be a str")
        return self._argon2.hash(self._peppered(password))

    def verify(self, stored_hash: str, password: str) -> bool:
        """True if ``password`` matches; False for a wrong password or a corrupt hash."""
        if not isinstance(stored_hash, str) or not isinstance(password, str):
            return False
        if len(password) > MAX_VERIFY_CHARS:
            return False
        try:
            return self._argon2.verify(stored_hash, self._peppered(password))
        except (VerificationError, InvalidHashError, ValueError, TypeError):
            return False

    def verify_dummy(self, password: str) -> bool:
        """Spend a real verification's time on ``dummy_hash``; always False."""
        self.verify(self.dummy_hash, password if isinstance(password, str) else "")
        return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """True if the hash used other parameters (or is unreadable): rehash at next login."""
        if not isinstance(stored_hash, str):
            return True
        try:
            return self._argon2.check_needs_rehash(stored_hash)
        except (InvalidHashError, ValueError, TypeError):
            return True


def _weak(message: str) -> InvalidRequestError:
    return InvalidRequestError(message, code="weak_password")


def validate_password_strength(password: str, *, forbidden: Iterable[str] = ()) -> None:
    """NIST 800-63B 5.1.1.2: rules of length, not of composition.

    10..128 characters (code points, after NFKC), not one character repeated,
    and not equal to a ``forbidden`` value such as the user's login or e-mail
    (compared case-insensitively). Raises ``InvalidRequestError`` (code
    ``weak_password``) naming the rule.
    """
    if not isinstance(password, str):
        raise _weak("password: must be a string")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise _weak("password: contains an unpaired surrogate, not valid Unicode") from None
    prepared = _prepare(password)
    if len(prepared) < MIN_PASSWORD_CHARS:
        raise _weak(f"password: shorter than {MIN_PASSWORD_CHARS} characters")
    if len(prepared) > MAX_PASSWORD_CHARS:
        raise _weak(f"password: longer than {MAX_PASSWORD_CHARS} characters")
    if len(set(prepared)) == 1:
        raise _weak("password: one character repeated")
    folded = prepared.casefold()
    if any(isinstance(v, str) and v and folded == _prepare(v).casefold() for v in forbidden):
        raise _weak("password: must not be your login name or e-mail address")
