"""String types for request models: every string has a size limit and no NUL.

PostgreSQL text cannot hold U+0000 and SQLite can, so without this the same
request would be stored on one backend and fail with a 500 on the other.
Names and identifiers also refuse the other control characters; message text
keeps tab and newlines.
"""

from __future__ import annotations

import re

from pydantic import AfterValidator

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_EXCEPT_WHITESPACE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _no_control(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("control characters are not allowed")
    return value


def _no_nul(value: str) -> str:
    if _CONTROL_EXCEPT_WHITESPACE.search(value):
        raise ValueError("control characters other than tab and newline are not allowed")
    return value


# Use as Annotated[str, StringConstraints(max_length=...), SingleLine].
SingleLine = AfterValidator(_no_control)
FreeText = AfterValidator(_no_nul)
