"""Where a sign-in may send the browser back: an allow-list of URL prefixes.

A sign-in ends by redirecting to the app with a one-time code in the URL
fragment, so a return URL the operator did not list would hand that code to
whoever named it (an open redirect). Entries are an origin
(``https://app.example``), an origin and a path (``https://app.example/auth``:
that path and below), or a native app's scheme (``com.example.parley:/oauth``,
RFC 8252 section 7.1).
"""

from __future__ import annotations

from collections.abc import Sequence

from config.errors import InvalidRequestError
from config.settings import ReturnUrlParts, split_return_url


class ReturnUrlNotAllowedError(InvalidRequestError):
    code = "oidc_return_url_not_allowed"


def _under(url: ReturnUrlParts, prefix: ReturnUrlParts) -> bool:
    return (
        url.scheme == prefix.scheme
        and url.host == prefix.host
        and url.port == prefix.port
        and (not prefix.path or url.path == prefix.path or url.path.startswith(prefix.path + "/"))
    )


class ReturnUrlPolicy:
    """Checks return URLs against the operator's prefixes."""

    def __init__(self, prefixes: Sequence[str]) -> None:
        self._prefixes = [split_return_url(p) for p in prefixes]

    def check(self, url: str) -> str:
        """``url`` itself when a prefix covers it, else ``ReturnUrlNotAllowedError``."""
        try:
            parts = split_return_url(url)
        except ValueError as exc:
            raise ReturnUrlNotAllowedError(f"return_to: {exc}") from None
        if not any(_under(parts, prefix) for prefix in self._prefixes):
            raise ReturnUrlNotAllowedError(
                "return_to: not an allowed return URL (PARLEY_AUTH_OIDC_RETURN_URLS)"
            )
        return url
