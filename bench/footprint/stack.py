"""The measured stack: nginx -> one Parley node -> PostgreSQL + Redis (or SQLite, in memory).

Started the production way: the schema applied by ``parley migrate`` in its own
process (as docker-compose's one-shot ``migrate`` service does), then ``parley
serve`` with one worker (``tests/support/server.py``), and nginx with the
shipped ``config/deploy/nginx.conf`` rendered by ``scripts/balancer.py`` as the
e2e tests render it (addresses and file locations rewritten; without TLS, the
https server is served as plain HTTP). The *embedded* profile is what ``make
run`` starts: SQLite and the in-memory fan-out, no Redis (nginx still in front).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.drills.backends import PrivatePostgres, PrivateRedis
from bench.footprint.memory import PidSource
from bench.footprint.services import (
    PG_ADMIN,
    REDIS_BASE,
    REDIS_SHARED_DB,
    PostgresDatabase,
    RedisNamespace,
    own_admin_url,
    start_postgres,
    start_redis,
)
from bench.procstat import process_tree
from scripts.balancer import Balancer
from tests.support.server import ROOT, ServerProcess

Profile = Literal["postgres", "embedded"]
Services = Literal["shared", "own"]


@dataclass
class StackOptions:
    profile: Profile
    services: Services = "shared"
    pg_settings: dict[str, str] = field(default_factory=dict)
    redis_settings: dict[str, str] = field(default_factory=dict)
    node_env: dict[str, str] = field(default_factory=dict)


def base_env(keys_dir: Path, public_url: str) -> dict[str, str]:
    """Settings of every profile: production defaults, but for what one load
    generator on one machine needs."""
    return {
        "PARLEY_AUTH_KEYS_DIR": str(keys_dir),
        "PARLEY_SERVER_WORKERS": "1",
        "PARLEY_SERVER_PUBLIC_URL": public_url,
        # As docker-compose: only nginx reaches the node.
        "PARLEY_SERVER_FORWARDED_ALLOW_IPS": "*",
        # Sign-in happens once, before the sockets connect: no refresh storm
        # in the middle of a phase.
        "PARLEY_AUTH_ACCESS_TOKEN_TTL": "3600",
        "PARLEY_LOG_LEVEL": "WARNING",
    }


class Stack:
    """Everything of one profile, started in order and stopped in reverse (also on
    failure or Ctrl-C): services, schema, node, nginx."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.exit = contextlib.AsyncExitStack()
        self.tmp = Path(tempfile.mkdtemp(prefix="parley-footprint-"))
        self.node: ServerProcess | None = None
        self.nginx: Balancer | None = None
        self.database: PostgresDatabase | None = None
        self.redis: RedisNamespace | None = None
        self.env: dict[str, str] = {}

    async def __aenter__(self) -> Stack:
        try:
            await self._start()
        except BaseException:
            await self.exit.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.exit.aclose()

    async def _start(self) -> None:
        self.exit.callback(shutil.rmtree, self.tmp, True)
        node = ServerProcess({}, name="footprint")
        # Its own prefix directory (made by Balancer): run as root, nginx runs as
        # nobody, who cannot enter our 0700 temporary directory.
        nginx = Balancer("nginx", [f"127.0.0.1:{node.port}"])
        self.exit.callback(nginx.remove)
        env = base_env(self.tmp / "keys", nginx.url)
        if self.options.profile == "postgres":
            env |= await self._services()
            self.env = env | self.options.node_env
            migrate(self.env)
        else:
            db = self.tmp / "parley.sqlite3"
            env["PARLEY_DATABASE_URL"] = f"sqlite://{db}"
            self.env = env | self.options.node_env
        node.env = {k: v for k, v in self.env.items() if v != ""}  # KEY= removes one
        self.exit.callback(node.stop)
        self.node = node.start(timeout=90)
        self.nginx = nginx.start()

    async def _services(self) -> dict[str, str]:
        admin, redis_base, redis_db = PG_ADMIN, REDIS_BASE, REDIS_SHARED_DB
        if self.options.services == "own":
            cluster = PrivatePostgres()
            self.exit.callback(cluster.stop)
            await start_postgres(cluster, self.options.pg_settings)
            admin = own_admin_url(cluster)
            server = PrivateRedis()
            self.exit.callback(server.stop)
            await start_redis(server, self.options.redis_settings)
            redis_base, redis_db = server.url.rsplit("/", 1)[0], 0
        database = PostgresDatabase(admin)
        self.exit.push_async_callback(database.drop)
        await database.create()
        self.database = database
        namespace = RedisNamespace(redis_base, redis_db)
        self.exit.push_async_callback(namespace.close)
        await namespace.open()
        self.redis = namespace
        return {
            "PARLEY_DATABASE_URL": database.url,
            # docker-compose's `migrate` service applies the schema; the node does not.
            "PARLEY_DATABASE_AUTO_MIGRATE": "false",
            "PARLEY_REDIS_URL": namespace.url,
            "PARLEY_REDIS_KEY_PREFIX": namespace.key_prefix,
            "PARLEY_REDIS_CHANNEL": namespace.channel,
        }

    @property
    def url(self) -> str:
        """Where clients reach Parley: nginx."""
        assert self.nginx is not None
        return self.nginx.url

    def sources(self) -> dict[str, PidSource]:
        """The processes of each component, in the order of the table."""
        assert self.node is not None and self.node.proc is not None
        assert self.nginx is not None and self.nginx.proc is not None
        node_pid, nginx_pid = self.node.proc.pid, self.nginx.proc.pid

        async def node() -> list[int]:
            return process_tree(node_pid)

        async def nginx() -> list[int]:
            return process_tree(nginx_pid)

        out: dict[str, PidSource] = {"parley": node}
        if self.database is not None and self.redis is not None:
            out["postgres"] = self.database.pids
            out["redis"] = self.redis.pids
        out["nginx"] = nginx
        return out

    def context(self) -> dict[str, PidSource]:
        """Measured alongside: the whole PostgreSQL server, other people's backends too."""
        return {"postgres_server": self.database.all_pids} if self.database is not None else {}

    async def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "profile": self.options.profile,
            "services": self.options.services if self.database else None,
            "node_env": {
                k: v for k, v in self.env.items() if not k.endswith(("_DIR", "_URL", "PREFIX"))
            },
            "nginx": nginx_settings(self.nginx),
        }
        if self.database is not None:
            out["postgres"] = await self.database.settings()
            out["postgres_set"] = self.options.pg_settings
        if self.redis is not None:
            out["redis"] = await self.redis.settings()
            out["redis_set"] = self.options.redis_settings
        return out


def nginx_settings(nginx: Balancer | None) -> dict[str, str]:
    """worker_processes and worker_connections of the rendered configuration."""
    if nginx is None:
        return {}
    out = {}
    for line in nginx.config.read_text().splitlines():
        words = line.strip().rstrip(";").split()
        if words and words[0] in ("worker_processes", "worker_connections"):
            out[words[0]] = words[1]
    return out


def migrate(env: dict[str, str]) -> None:
    """``parley migrate`` in its own process, as docker-compose's one-shot service."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")} | env
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "migrate"],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"parley migrate failed:\n{result.stdout}{result.stderr}")
