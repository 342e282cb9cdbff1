"""A local Parley cluster for trials: N nodes on loopback behind a real nginx or HAProxy.

    python -m scripts.cluster                      # 2 nodes + nginx on :8080
    python -m scripts.cluster --nodes 3 --balancer haproxy --port 8090
    make cluster CLUSTER_ARGS="--nodes 3"

The nodes share one PostgreSQL database (created if missing), one Redis and
one key directory, as a real deployment does; the schema is migrated once
before they start. Logs: ``<workdir>/node-N.log`` (JSON; the console SMS
provider writes sign-in codes there) and the balancer's files under its prefix
directory, both printed at start. Ctrl-C (or SIGTERM) drains the nodes and
stops everything. ``kill -TERM <pid>`` of one node drains just that node.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

import httpx

from scripts.balancer import KINDS, Balancer, BalancerError, Kind, free_port

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/parley_cluster"
DEFAULT_REDIS = "redis://127.0.0.1:6379/13"


@dataclass
class Node:
    """One ``parley serve`` process on a fixed loopback port (kept across restarts)."""

    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
        env |= self.env | {"PARLEY_SERVER_HOST": "127.0.0.1", "PARLEY_SERVER_PORT": str(self.port)}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve"],
            cwd=ROOT, env=env, stdout=self._log, stderr=self._log,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready in {timeout}s; see {self.log_path}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int | None:
        """Wait for the process to end (killing it after ``timeout``); its exit status."""
        if self.proc is None:
            return None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code


@dataclass
class Cluster:
    """Nodes sharing a database, Redis and keys, behind one balancer."""

    nodes: int = 2
    balancer: Kind = "nginx"
    database_url: str = DEFAULT_DATABASE
    redis_url: str = DEFAULT_REDIS
    workdir: Path = ROOT / "var" / "cluster"
    port: int = 0
    base_port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    members: list[Node] = field(default_factory=list)
    lb: Balancer | None = None
    hash_key: str | None = None  # see scripts.balancer.render_nginx
    # Seconds for a node to answer /readyz (imports alone take a few on a busy machine).
    start_timeout: float = 90.0

    def node_env(self) -> dict[str, str]:
        return {
            "PARLEY_DATABASE_URL": self.database_url,
            "PARLEY_DATABASE_AUTO_MIGRATE": "false",  # migrated once, before the nodes start
            "PARLEY_REDIS_URL": self.redis_url,
            "PARLEY_AUTH_KEYS_DIR": str(self.workdir / "keys"),
            "PARLEY_MEDIA_DIR": str(self.workdir / "media"),
            # Only the balancer (and local tools) reach the nodes.
            "PARLEY_SERVER_FORWARDED_ALLOW_IPS": "127.0.0.1",
            "PARLEY_LOG_FORMAT": "json",
            **self.env,
        }

    def start(self) -> Cluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = self.node_env()
        if self.database_url.startswith(("postgres://", "postgresql://")):
            asyncio.run(create_database_if_missing(self.database_url))
        migrate = subprocess.run(
            [sys.executable, "-m", "server.cli", "migrate"],
            cwd=ROOT, capture_output=True, text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")} | env,
        )  # fmt: skip
        if migrate.returncode != 0:
            raise RuntimeError(f"parley migrate failed:\n{migrate.stderr[-3000:]}")
        for i in range(1, self.nodes + 1):
            port = self.base_port + i - 1 if self.base_port else free_port()
            node = Node(f"node-{i}", port, env, self.workdir / f"node-{i}.log")
            self.members.append(node)
        # Start them together: each takes a few seconds to import and open its pools.
        errors: list[BaseException] = []

        def start(node: Node) -> None:
            try:
                node.start(self.start_timeout)
            except BaseException as exc:  # reported below, after every thread ended
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(n,)) for n in self.members]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            self.stop()
            raise errors[0]
        self.lb = Balancer(
            self.balancer, [n.address for n in self.members], port=self.port, hash_key=self.hash_key
        )
        self.lb.start()
        return self

    @property
    def url(self) -> str:
        assert self.lb is not None
        return self.lb.url

    def stop(self, *, drain: bool = True) -> None:
        for node in self.members:
            node.signal(signal.SIGTERM if drain else signal.SIGKILL)
        for node in self.members:
            node.wait()
        if self.lb is not None:
            self.lb.remove()


async def create_database_if_missing(url: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    base, _, name = url.rpartition("/")
    conn = await asyncpg.connect(f"{base}/postgres", timeout=5)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.cluster",
        description="Start N Parley nodes on loopback behind a real nginx or HAProxy "
        "(unprivileged, configuration rendered from config/deploy/ into a temporary "
        "directory). Ctrl-C drains the nodes and stops everything.",
    )
    add = parser.add_argument
    add("--nodes", type=int, default=2, choices=range(1, 9), metavar="N",
        help="how many nodes (1-8; default 2)")  # fmt: skip
    add("--balancer", choices=KINDS, default="nginx",
        help="the load balancer in front (default nginx)")  # fmt: skip
    add("--port", type=int, default=8080,
        help="the balancer's port on 127.0.0.1 (default 8080; 0: any free)")  # fmt: skip
    add("--base-port", type=int, default=8001,
        help="node N listens on base-port + N - 1 (default 8001; 0: free ports)")  # fmt: skip
    add("--database-url", default=os.environ.get("PARLEY_DATABASE_URL", DEFAULT_DATABASE),
        help=f"PostgreSQL for the nodes, made if missing (default {DEFAULT_DATABASE})")  # fmt: skip
    add("--redis-url", default=os.environ.get("PARLEY_REDIS_URL", DEFAULT_REDIS),
        help=f"Redis shared by the nodes (default {DEFAULT_REDIS})")  # fmt: skip
    add("--workdir", type=Path, default=ROOT / "var" / "cluster",
        help="keys, media and node logs (default var/cluster)")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cluster = Cluster(
        nodes=args.nodes, balancer=args.balancer, database_url=args.database_url,
        redis_url=args.redis_url, workdir=args.workdir, port=args.port, base_port=args.base_port,
    )  # fmt: skip
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        cluster.start()
    except (BalancerError, RuntimeError, OSError) as exc:
        print(f"cluster did not start: {exc}", file=sys.stderr)
        return 1
    assert cluster.lb is not None
    print(f"Parley through {args.balancer}: {cluster.url}")
    for node in cluster.members:
        assert node.proc is not None
        print(f"  {node.name}: {node.url}  pid {node.proc.pid}  log {node.log_path}")
    print(f"  {args.balancer}: config {cluster.lb.config}, logs in {cluster.lb.prefix}")
    print("Ctrl-C drains the nodes and stops.")
    try:
        while not stop.wait(1):
            for node in cluster.members:
                if node.proc is not None and node.proc.poll() is not None:
                    print(f"  {node.name} exited ({node.proc.returncode})", file=sys.stderr)
                    node.proc = None
    finally:
        print("draining and stopping…")
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
