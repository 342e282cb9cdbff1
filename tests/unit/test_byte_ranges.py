"""Range headers on media downloads: what is served, what is ignored, what is refused."""

from __future__ import annotations

import pytest

from server.media.service import parse_byte_range

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", (0, 100)),
        ("bytes=900-", (900, 100)),
        ("bytes=990-5000", (990, 10)),
        ("bytes=-100", (900, 100)),
        ("bytes=-5000", (0, SIZE)),
        (" Bytes = 5-5 ", (5, 1)),
    ],
)
def test_a_byte_range_is_served(header: str, expected: tuple[int, int]) -> None:
    assert parse_byte_range(header, SIZE) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "items=0-9",
        "bytes=0-9,20-29",  # several ranges: the whole body
        "bytes=9-0",
        "bytes=-",
        "bytes=5",
        "bytes=abc-",
        "bytes=²-5",  # Unicode digits that int() would take
        "bytes=٣-5",
        "bytes=1_0-20",
        "bytes=+5-10",
        "bytes=-٣",
    ],
)
def test_anything_else_is_ignored(header: str | None) -> None:
    assert parse_byte_range(header, SIZE) is None


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_an_unsatisfiable_range_is_refused(header: str) -> None:
    with pytest.raises(ValueError):
        parse_byte_range(header, SIZE)
