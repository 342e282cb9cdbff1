"""Reaching the real PostgreSQL and Redis of the test machine.

They must be running: an unreachable one FAILS the tests that need it (never a
skip), so a green run always means the real backends were exercised.
"""

from __future__ import annotations

import os
import uuid

import asyncpg
import pytest
import redis.asyncio as redis_asyncio

POSTGRES_ADMIN_URL = os.environ.get(
    "PARLEY_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"
)
REDIS_BASE_URL = os.environ.get("PARLEY_TEST_REDIS_URL", "redis://127.0.0.1:6379")
# Dedicated db indexes: integration tests flush theirs per test; e2e nodes share the other.
REDIS_INTEGRATION_DB = 15
REDIS_E2E_DB = 14

_HOW_TO_START = {
    "postgres": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "redis": (
        'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no'
    ),
}


def _db_url(name: str) -> str:
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


async def create_postgres_database(prefix: str = "parley_test") -> str:
    """A fresh, empty database; returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL is unreachable at {POSTGRES_ADMIN_URL} ({exc}); start it with: "
            f"{_HOW_TO_START['postgres']}",
            pytrace=False,
        )
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return _db_url(name)


async def drop_postgres_database(url: str) -> None:
    name = url.rpartition("/")[2]
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def redis_url(db: int) -> str:
    return f"{REDIS_BASE_URL}/{db}"


async def flush_redis(db: int) -> None:
    client = redis_asyncio.Redis.from_url(redis_url(db), socket_connect_timeout=5)
    try:
        await client.flushdb()
    except (OSError, redis_asyncio.ConnectionError) as exc:
        pytest.fail(
            f"Redis is unreachable at {redis_url(db)} ({exc}); "
            f"start it with: {_HOW_TO_START['redis']}",
            pytrace=False,
        )
    finally:
        await client.aclose()
