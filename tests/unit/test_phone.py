"""Phone number normalization to E.164."""

from __future__ import annotations

import phonenumbers
import pytest

from server.auth.phone import InvalidPhoneError, normalize_phone

# Each example was checked with phonenumbers.is_valid_number; the GB one is in
# Ofcom's range reserved for drama (020 7946 0xxx), so it reaches nobody.
VALID = [
    ("+1 415-555-2671", None, "+14155552671"),
    ("+1 415-555-2671", "GB", "+14155552671"),
    ("(415) 555-2671", "US", "+14155552671"),
    ("(415) 555-2671", "us", "+14155552671"),
    ("020 7946 0018", "GB", "+442079460018"),
    ("+44 20 7946 0018", None, "+442079460018"),
]


@pytest.mark.parametrize(("raw", "region", "expected"), VALID)
def test_examples_are_valid_numbers(raw: str, region: str | None, expected: str) -> None:
    """The test data itself is valid according to libphonenumber."""
    assert phonenumbers.is_valid_number(phonenumbers.parse(expected, None))


@pytest.mark.parametrize(("raw", "region", "expected"), VALID)
def test_normalizes_to_e164(raw: str, region: str | None, expected: str) -> None:
    """International or national (with region) spellings normalize to the same E.164 string."""
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize("region", ["US", "GB"])
def test_library_example_numbers_round_trip(region: str) -> None:
    """libphonenumber's own example number for a region normalizes to its E.164 form."""
    example = phonenumbers.example_number(region)
    assert example is not None
    national = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL)
    expected = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    assert normalize_phone(national, region) == expected


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("12", None),
        ("12", "US"),
        ("hello", None),
        ("hello", "US"),
        ("+999 123", None),
        ("+999 123", "US"),
        ("", "US"),
        ("415 555 2671", None),
        ("+1 415 555 267", None),
    ],
)
def test_invalid_numbers_are_refused(raw: str, region: str | None) -> None:
    """Short, non-numeric, unknown-country or region-less national input is refused."""
    with pytest.raises(InvalidPhoneError) as excinfo:
        normalize_phone(raw, region)
    assert excinfo.value.code == "invalid_phone"
    assert excinfo.value.status == 422
    assert str(excinfo.value).startswith("phone:")
