"""Valid, distinct phone numbers for tests."""

from __future__ import annotations

import itertools
import random

import phonenumbers

_used: set[str] = set()
_counter = itertools.count()


def fresh_phone(region: str = "US") -> str:
    """A valid E.164 number no other test in this run has used."""
    rng = random.Random()
    base = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assert base is not None
    national = str(base.national_number)
    for _ in range(100_000):
        tail = f"{rng.randrange(1_000_000):06d}"
        candidate = phonenumbers.parse(f"+{base.country_code}{national[:-6]}{tail}")
        e164 = phonenumbers.format_number(candidate, phonenumbers.PhoneNumberFormat.E164)
        if phonenumbers.is_valid_number(candidate) and e164 not in _used:
            _used.add(e164)
            return e164
    raise RuntimeError("ran out of test phone numbers")
