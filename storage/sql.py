"""Hand-written SQL for the few hot paths where the ORM's per-query cost shows.

Statements are written once with ``?`` placeholders and numbered (``$1``,
``$2``, ...) for PostgreSQL. Everything else goes through Tortoise models.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient

_PLACEHOLDER = re.compile(r"\?")


_cached: BaseDBAsyncClient | None = None


def connection() -> BaseDBAsyncClient:
    """The default connection (looked up once: Tortoise's lookup costs per call)."""
    global _cached
    if _cached is None:
        _cached = connections.get("default")
    return _cached


def forget_connection() -> None:
    """Called when the database closes, so a reopened one is looked up afresh."""
    global _cached
    _cached = None


def is_postgres(conn: BaseDBAsyncClient | None = None) -> bool:
    return (conn or connection()).capabilities.dialect == "postgres"


def _for(conn: BaseDBAsyncClient, sql: str) -> str:
    if not is_postgres(conn):
        return sql
    counter = itertools.count(1)
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


async def fetch(
    sql: str, params: Sequence[Any], *, conn: BaseDBAsyncClient | None = None
) -> list[dict[str, Any]]:
    """Rows of a statement (use RETURNING for writes) as dicts."""
    conn = conn or connection()
    rows = await conn.execute_query_dict(_for(conn, sql), list(params))
    return rows


async def fetch_one(
    sql: str, params: Sequence[Any], *, conn: BaseDBAsyncClient | None = None
) -> dict[str, Any] | None:
    rows = await fetch(sql, params, conn=conn)
    return rows[0] if rows else None
