"""CPU time spent by the node, by PostgreSQL for the benchmark's database, and by this process.

Read from /proc (utime + stime) around a scenario, so "CPU per request"
says where the two cores went: the node's processes (the supervisor and its
workers), the PostgreSQL backends connected to the benchmark's database
(``pg_stat_activity``), and the load generator itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg

from bench.procstat import TICK, process_tree, stat


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        fields = stat(pid)
        if fields is not None:
            out[pid] = (int(fields[12]) + int(fields[13])) / TICK
    return out


class CpuMeter:
    """CPU seconds of each group between ``start`` and ``stop``."""

    def __init__(self, node_pid: int, conn: asyncpg.Connection, database: str) -> None:
        self._node = node_pid
        self._conn = conn
        self._database = database
        self._before: dict[str, dict[int, float]] = {}

    async def _groups(self) -> dict[str, list[int]]:
        rows = await self._conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            self._database,
        )
        return {
            "server": process_tree(self._node),
            "postgres": [r["pid"] for r in rows],
            "client": [os.getpid()],
        }

    async def start(self) -> None:
        self._before = {k: cpu_seconds(v) for k, v in (await self._groups()).items()}

    async def stop(self) -> dict[str, float]:
        out = {}
        for group, pids in (await self._groups()).items():
            before = self._before.get(group, {})
            now = cpu_seconds(pids)
            out[group] = round(sum(now[p] - before.get(p, 0.0) for p in now), 3)
        return out


class Profiler:
    """py-spy on each of the node's worker processes while a scenario runs (raw stacks)."""

    def __init__(self, node_pid: int, output_prefix: Path) -> None:
        self._node = node_pid
        self._prefix = output_prefix
        self._procs: list[subprocess.Popen[bytes]] = []
        self.outputs: list[str] = []

    def start(self, label: str) -> None:
        tree = process_tree(self._node)
        # The workers are the leaves (uvicorn's supervisor forks them).
        parents = {int(f[2]) for p in tree if (f := stat(p)) is not None}
        for pid in [p for p in tree if p not in parents]:
            output = Path(f"{self._prefix}-{label}-{pid}.txt")
            self.outputs.append(str(output))
            self._procs.append(
                subprocess.Popen(
                    [
                        str(Path(sys.executable).parent / "py-spy"),
                        "record",
                        "--pid",
                        str(pid),
                        "--rate",
                        "250",
                        "--nonblocking",
                        "--format",
                        "raw",
                        "--output",
                        str(output),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def stop(self) -> None:
        for proc in self._procs:
            proc.send_signal(signal.SIGINT)
        for proc in self._procs:
            proc.wait(30)
        self._procs.clear()
