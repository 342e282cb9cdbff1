"""Generated phone numbers: valid, distinct, written the way address books write them.

The numbers come from ranges libphonenumber holds valid (British mobiles
+44 71/72/73, and United States numbers in a dozen area codes), so the
server's normalization keeps every one; run.py checks the server stored all
5,000 of each book. Two thirds are British, so a book uploaded with region
GB holds national numbers ("07123 456789"), international ones
("+44 7123 456789") and a few foreign ones ("+1 212-555-0123").
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import phonenumbers

_GB_SPACE = 3 * 10**8  # +44 7[1-3] and eight digits
_US_AREAS = (201, 212, 213, 305, 312, 415, 617, 646, 702, 713, 718, 917)
_US_SPACE = len(_US_AREAS) * 800 * 10**4  # area, exchange 200-999, four digits
SPACE = _GB_SPACE + _US_SPACE


def e164_of(index: int) -> str:
    """The index-th number of the space, in E.164."""
    if index < _GB_SPACE:
        return f"+447{1 + index // 10**8}{index % 10**8:08d}"
    index -= _GB_SPACE
    area, rest = divmod(index, 800 * 10**4)
    exchange, line = divmod(rest, 10**4)
    return f"+1{_US_AREAS[area]}{200 + exchange}{line:04d}"


def directory_numbers(n: int, seed: int = 2) -> list[str]:
    """``n`` distinct numbers, the registered users' (one each), GB two to one."""
    rng = random.Random(seed)
    gb = rng.sample(range(_GB_SPACE), n * 2 // 3)
    us = rng.sample(range(_GB_SPACE, SPACE), n - len(gb))
    numbers = [e164_of(i) for i in gb + us]
    rng.shuffle(numbers)
    return numbers


def unregistered_numbers(n: int, registered: set[str], rng: random.Random) -> list[str]:
    """``n`` distinct numbers nobody registered."""
    out: set[str] = set()
    while len(out) < n:
        index = (
            rng.randrange(_GB_SPACE) if rng.random() < 2 / 3 else rng.randrange(_GB_SPACE, SPACE)
        )
        number = e164_of(index)
        if number not in registered:
            out.add(number)
    return sorted(out)


def as_written(e164: str, rng: random.Random) -> str:
    """The number as an address book of a British phone may hold it."""
    number = phonenumbers.parse(e164)
    if number.country_code == 44 and rng.random() < 0.6:
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    if rng.random() < 0.5:
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return e164


def address_book(
    registered: Sequence[str],
    registered_set: set[str],
    size: int,
    fraction: float,
    rng: random.Random,
) -> tuple[list[str], int]:
    """A book of ``size`` numbers, ``fraction`` of them registered; (numbers, registered count)."""
    hits = round(size * fraction)
    book = rng.sample(list(registered), hits) if hits else []
    book += unregistered_numbers(size - hits, registered_set, rng)
    rng.shuffle(book)
    return [as_written(n, rng) for n in book], hits


def check_valid(numbers: Sequence[str], sample: int = 2000, seed: int = 3) -> None:
    """Fail early if the generator ever drifts out of libphonenumber's valid ranges."""
    rng = random.Random(seed)
    for e164 in rng.sample(list(numbers), min(sample, len(numbers))):
        if not phonenumbers.is_valid_number(phonenumbers.parse(e164)):
            raise SystemExit(f"generated number {e164} is not valid; fix bench/search/phones.py")
