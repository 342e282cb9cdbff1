"""Backends for integration tests: every suite runs on each shipped backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tortoise import connections

from config.settings import DatabaseSettings
from storage import database
from storage.kv import KeyValueStore, MemoryKeyValueStore, RedisKeyValueStore
from tests.support.services import REDIS_INTEGRATION_DB, flush_redis, redis_url

_TABLES = (
    "media_uses",
    "media_variants",
    "media",
    "wallet_challenges",
    "action_tokens",
    "devices",
    "messages",
    "conversation_members",
    "conversations",
    "spent_refresh_tokens",
    "sessions",
    "identities",
    "users",
)
_migrated: set[str] = set()


@pytest.fixture(params=["sqlite", "postgres"])
async def db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, postgres_url: str
) -> AsyncIterator[DatabaseSettings]:
    """An open, migrated, empty database: a SQLite file or this run's PostgreSQL database."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("db") / "parley.sqlite3"
        settings = DatabaseSettings(url=f"sqlite://{path}")
    else:
        settings = DatabaseSettings(url=postgres_url, pool_max_size=20)
    if settings.url not in _migrated:
        await database.apply_migrations(settings)
        _migrated.add(settings.url)
    await database.open_database(settings)
    conn = connections.get("default")
    for table in _TABLES:
        await conn.execute_script(f'DELETE FROM "{table}"')
    try:
        yield settings
    finally:
        await database.close_database()


@pytest.fixture(params=["memory", "redis"])
async def kv(request: pytest.FixtureRequest) -> AsyncIterator[KeyValueStore]:
    """A key-value store: the in-process default or Redis (its test db flushed first)."""
    store: KeyValueStore
    if request.param == "memory":
        store = MemoryKeyValueStore()
    else:
        await flush_redis(REDIS_INTEGRATION_DB)
        store = RedisKeyValueStore.from_url(redis_url(REDIS_INTEGRATION_DB), prefix="test:")
    try:
        yield store
    finally:
        await store.close()
