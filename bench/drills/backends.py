"""The PostgreSQL and Redis a drill restarts: private instances (default) or the machine's own.

Private instances run on free loopback ports from temporary directories, so a
drill restarting them disturbs nobody else using this machine. ``shared``
restarts the machine's own servers with the commands an operator would use
(``pg_ctlcluster ... restart``; ``redis-cli shutdown nosave`` and
``redis-server --daemonize yes ...``): every other client of them sees the
outage too.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Protocol

import redis

from scripts.balancer import free_port

REDIS_START = [
    "redis-server",
    *("--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379"),
    *("--save", "", "--appendonly", "no"),
]


class Backend(Protocol):
    url: str

    def start(self) -> None: ...

    def restart(self) -> float: ...

    def stop(self) -> None: ...


def _run(args: list[str], *, as_postgres: bool = False) -> str:
    if as_postgres and os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def _wait_for_redis(url: str, timeout: float = 15.0) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                client.ping()
                return
            except (OSError, redis.RedisError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        client.close()


class PrivateRedis:
    """A redis-server of the drill's own (no persistence, like the machine's)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        _run(
            [
                "redis-server",
                *("--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(self.port)),
                *("--save", "", "--appendonly", "no", "--dir", tempfile.gettempdir()),
            ]
        )
        _wait_for_redis(self.url)

    def restart(self) -> float:
        """Shut down (dropping its data, as a crash would) and start again; seconds down."""
        began = time.monotonic()
        _run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"])
        self.start()
        return time.monotonic() - began

    def stop(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], check=False)


class SharedRedis:
    """The machine's Redis on 6379 (a database index of the drill's own)."""

    url = "redis://127.0.0.1:6379/12"

    def start(self) -> None:
        _wait_for_redis(self.url)
        redis.Redis.from_url(self.url).flushdb()

    def restart(self) -> float:
        began = time.monotonic()
        _run(["redis-cli", "shutdown", "nosave"])
        _run(REDIS_START)
        _wait_for_redis(self.url)
        return time.monotonic() - began

    def stop(self) -> None:
        redis.Redis.from_url(self.url).flushdb()


class PrivatePostgres:
    """A PostgreSQL instance of the drill's own: initdb in a temporary directory."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="parley-drill-pg-"))
        self.data = self.root / "data"
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/parley_drill"
        self.bin = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        if not self.data.exists():
            _run(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.data),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ],
                as_postgres=True,
            )
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        _run(
            [
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.root / "postgres.log"),
                "-w",
                "start",
            ],
            as_postgres=True,
        )

    def restart(self) -> float:
        """A fast restart (sessions are ended, as on a real restart); seconds it took."""
        began = time.monotonic()
        # -l: the new postmaster must not inherit our pipes (run() would wait for their EOF).
        log = str(self.root / "postgres.log")
        _run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", log, "-m", "fast", "-w",
              "restart"], as_postgres=True)  # fmt: skip
        return time.monotonic() - began

    def halt(self) -> None:
        """Stop (fast: sessions are ended) until :meth:`start`."""
        _run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
             as_postgres=True)  # fmt: skip

    def stop(self) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--"] * (os.geteuid() == 0)
            + [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            check=False, capture_output=True,
        )  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


class SharedPostgres:
    """The machine's PostgreSQL cluster, a database of the drill's own on it."""

    def __init__(self) -> None:
        self.url = f"postgres://postgres@127.0.0.1:5432/parley_drill_{uuid.uuid4().hex[:8]}"
        self.version = sorted(os.listdir("/etc/postgresql"))[-1]

    def start(self) -> None:
        pass  # already running; the database is made by the cluster

    def restart(self) -> float:
        began = time.monotonic()
        _run(["pg_ctlcluster", "--skip-systemctl-redirect", self.version, "main", "restart"])
        return time.monotonic() - began

    def stop(self) -> None:
        name = self.url.rpartition("/")[2]
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc",
             f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
            check=False, capture_output=True,
        )  # fmt: skip
