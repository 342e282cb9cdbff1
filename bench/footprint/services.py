"""PostgreSQL and Redis for the measured stack: this machine's, or throwaway ones of our own.

*shared* (the default) uses the servers every test here uses: a fresh
database, dropped at the end, and a fresh Redis key prefix and pub/sub
channel, whose keys are deleted at the end. Other people's backends and keys
live there too, so the PostgreSQL component counts only the postmaster, its
background processes and the backends of our database (`pg_stat_activity`),
and the Redis server's memory includes the others' (small) data.

*own* starts a PostgreSQL cluster and a ``redis-server`` of our own, as
bench/drills does (``bench/drills/backends.py``: ``initdb`` in a temporary
directory, as the ``postgres`` user when we are root, PostgreSQL's built-in
defaults as the official image runs them; Redis without persistence), with
``--pg-set`` and ``--redis-set`` applied, and removes both at the end: nothing
else runs in them, and their settings are ours to choose, e.g. a small host's.
"""

from __future__ import annotations

import os
import re
import uuid
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import redis.asyncio as redis_asyncio

from bench.drills.backends import PrivatePostgres, PrivateRedis
from bench.procstat import process_tree, stat

PG_ADMIN = os.environ.get("PARLEY_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("PARLEY_TEST_REDIS_URL", "redis://127.0.0.1:6379")
# Shared Redis: a db nothing else flushes (tests 15 and 14, bench.fanout and
# bench.auth 13, bench.search and bench.drills 12).
REDIS_SHARED_DB = 11
SETTING_NAME = re.compile(r"[a-z_][a-z0-9_.]*")

PG_SETTINGS = (
    "server_version",
    "shared_buffers",
    "work_mem",
    "maintenance_work_mem",
    "wal_buffers",
    "temp_buffers",
    "max_connections",
    "max_worker_processes",
    "autovacuum",
    "huge_pages",
    "jit",
)


async def start_postgres(cluster: PrivatePostgres, settings: dict[str, str]) -> None:
    """Start a throwaway cluster (bench/drills' ``PrivatePostgres``: initdb in a
    temporary directory, PostgreSQL's built-in defaults) with ``settings``
    applied by ``ALTER SYSTEM`` and a restart."""
    cluster.start()
    if settings:
        conn = await asyncpg.connect(own_admin_url(cluster))
        try:
            for key, value in settings.items():
                if not SETTING_NAME.fullmatch(key):
                    raise ValueError(f"not a PostgreSQL setting name: {key!r}")
                quoted = value.replace("'", "''")
                await conn.execute(f"ALTER SYSTEM SET {key} = '{quoted}'")
        finally:
            await conn.close()
        cluster.restart()  # shared_buffers and max_connections need one


def own_admin_url(cluster: PrivatePostgres) -> str:
    return f"postgres://postgres@127.0.0.1:{cluster.port}/postgres"


async def start_redis(server: PrivateRedis, settings: dict[str, str]) -> None:
    """Start a redis-server of our own (bench/drills' ``PrivateRedis``: no
    persistence) with ``settings`` applied by ``CONFIG SET``."""
    server.start()
    client = redis_asyncio.Redis.from_url(server.url)
    try:
        for key, value in settings.items():
            await client.config_set(key, value)
    finally:
        await client.aclose()


class PostgresDatabase:
    """A fresh database on a server; the processes that serve it, found per sample."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.name = f"parley_footprint_{uuid.uuid4().hex[:8]}"
        self.monitor: asyncpg.Connection | None = None
        self.postmaster = 0
        self.created = False

    @property
    def url(self) -> str:
        return self.admin_url.rsplit("/", 1)[0] + "/" + self.name

    async def create(self) -> None:
        admin = await asyncpg.connect(self.admin_url)
        try:
            await admin.execute(f'CREATE DATABASE "{self.name}"')
            self.created = True
        finally:
            await admin.close()
        # The monitor's own backend is in the admin database, so it is not counted.
        self.monitor = await asyncpg.connect(self.admin_url)
        backend = await self.monitor.fetchval("SELECT pg_backend_pid()")
        fields = stat(int(backend))
        assert fields is not None, "the monitor's backend is not visible in /proc"
        self.postmaster = int(fields[2])

    async def drop(self) -> None:
        if self.monitor is not None:
            await self.monitor.close()
        if self.created:
            admin = await asyncpg.connect(self.admin_url)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            finally:
                await admin.close()

    async def pids(self) -> list[int]:
        """The postmaster, its background processes, and the backends of our database
        (not the backends of other databases: other people's tests, our monitor)."""
        assert self.monitor is not None
        rows = await self.monitor.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname IS NOT NULL AND datname <> $1",
            self.name,
        )
        foreign = {int(r["pid"]) for r in rows}
        return [pid for pid in process_tree(self.postmaster) if pid not in foreign]

    async def all_pids(self) -> list[int]:
        """Every process of the server, whoever's."""
        return process_tree(self.postmaster)

    async def settings(self) -> dict[str, str]:
        assert self.monitor is not None
        return {name: str(await self.monitor.fetchval(f"SHOW {name}")) for name in PG_SETTINGS}


class RedisNamespace:
    """A fresh key prefix and pub/sub channel on a Redis server; the server's process."""

    def __init__(self, base_url: str, db: int) -> None:
        tag = uuid.uuid4().hex[:8]
        self.url = f"{base_url}/{db}"
        self.key_prefix = f"parley-footprint-{tag}:"
        self.channel = f"parley-footprint-{tag}"
        self.client = redis_asyncio.Redis.from_url(self.url)
        self.pid = 0

    async def open(self) -> None:
        info = await self.client.info("server")
        self.pid = int(info["process_id"])

    async def pids(self) -> list[int]:
        return [self.pid]

    async def settings(self) -> dict[str, Any]:
        memory = await self.client.info("memory")
        config = await self.client.config_get("maxmemory*")
        return {
            "redis_version": (await self.client.info("server"))["redis_version"],
            "maxmemory": config.get("maxmemory"),
            "maxmemory_policy": config.get("maxmemory-policy"),
            "used_memory_mib": round(int(memory["used_memory"]) / 2**20, 1),
            "used_memory_peak_mib": round(int(memory["used_memory_peak"]) / 2**20, 1),
        }

    async def our_keys_bytes(self) -> int:
        """MEMORY USAGE summed over our keys (what Parley itself keeps in Redis)."""
        total = 0
        async for key in self.client.scan_iter(match=self.key_prefix + "*", count=1000):
            total += int(await self.client.memory_usage(key) or 0)
        return total

    async def close(self) -> None:
        try:
            async for key in self.client.scan_iter(match=self.key_prefix + "*", count=1000):
                await self.client.unlink(key)
        finally:
            await self.client.aclose()
