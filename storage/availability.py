"""Telling "the database is away" apart from a bug.

While PostgreSQL restarts or fails over, queries fail with connection errors
(refused, reset, "the database system is shutting down", a pooled connection
that died mid-query). Those are not bugs: the client should hear a clear,
retryable 503 ``unavailable``, not ``internal_error``. Tortoise wraps the
driver's errors, so the whole chain of causes is looked at.
"""

from __future__ import annotations

import asyncpg.exceptions as pg  # type: ignore[import-untyped]

from config.errors import UnavailableError

# Connection-level failures: the server is not there, refuses sessions for now
# (57P0x: shutting down, starting up, terminated by an administrator), or the
# connection broke under a query.
_UNAVAILABLE = (
    ConnectionError,
    pg.PostgresConnectionError,
    pg.CannotConnectNowError,
    pg.AdminShutdownError,
    pg.CrashShutdownError,
    pg.InterfaceError,
    pg.InternalClientError,
)


def database_unavailable(exc: BaseException) -> UnavailableError | None:
    """An ``unavailable`` error when ``exc`` (or one of its causes) says the database is away."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _UNAVAILABLE):
            return UnavailableError("the database is unavailable; try again in a moment")
        current = current.__cause__ or current.__context__
    return None
