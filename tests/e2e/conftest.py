"""Real Parley nodes for end-to-end tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerProcess
from tests.support.services import (
    REDIS_E2E_DB,
    create_postgres_database,
    drop_postgres_database,
    flush_redis,
    redis_url,
)

# Every test signs in from 127.0.0.1; lift the per-address OTP limit for the suite.
# A short resend cool-down keeps the cool-down test fast.
BASE_ENV = {
    "PARLEY_AUTH_OTP_PER_IP_PER_HOUR": "100000",
    "PARLEY_AUTH_OTP_RESEND_COOLDOWN": "2",
    "PARLEY_LOG_LEVEL": "INFO",
    # Fast presence, so offline notices arrive within a test's patience.
    "PARLEY_REALTIME_PRESENCE_HEARTBEAT": "0.5",
}


def embedded_env(root: Path) -> dict[str, str]:
    """A node on the embedded defaults (SQLite file, in-memory fan-out and kv) under ``root``."""
    return {
        **BASE_ENV,
        "PARLEY_DATABASE_URL": f"sqlite://{root}/parley.sqlite3",
        "PARLEY_AUTH_KEYS_DIR": str(root / "keys"),
        "PARLEY_MEDIA_DIR": str(root / "media"),
    }


@pytest.fixture(scope="session")
def sqlite_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One node on the embedded defaults: SQLite file, in-memory fan-out and kv."""
    root: Path = tmp_path_factory.mktemp("sqlite-node")
    node = ServerProcess(embedded_env(root), name="sqlite-node").start()
    yield node
    node.stop()


@pytest.fixture(scope="session")
async def cluster_env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, str]]:
    """Settings two nodes share: one PostgreSQL database, one Redis, one key directory."""
    await flush_redis(REDIS_E2E_DB)
    database = await create_postgres_database("parley_e2e")
    run = uuid.uuid4().hex[:8]
    env = {
        **BASE_ENV,
        "PARLEY_DATABASE_URL": database,
        "PARLEY_DATABASE_AUTO_MIGRATE": "true",
        "PARLEY_REDIS_URL": redis_url(REDIS_E2E_DB),
        "PARLEY_REDIS_CHANNEL": f"parley-e2e-{run}",
        "PARLEY_REDIS_KEY_PREFIX": f"parley-e2e-{run}:",
        "PARLEY_AUTH_KEYS_DIR": str(tmp_path_factory.mktemp("cluster-keys")),
        # One media directory for both, as a shared volume would be.
        "PARLEY_MEDIA_DIR": str(tmp_path_factory.mktemp("cluster-media")),
    }
    yield env
    await drop_postgres_database(database)


@pytest.fixture(scope="session")
def cluster(cluster_env: dict[str, str]) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two nodes sharing PostgreSQL and Redis."""
    first = ServerProcess(cluster_env, name="node-1").start()
    second = ServerProcess(cluster_env, name="node-2").start()
    yield first, second
    first.stop()
    second.stop()
