"""The clients: users prepared as ``parley loadtest`` prepares them, sockets held by its
generator processes, and message load from them.

Sockets are added in steps (1,000, then 4,000 more to make 5,000): each step is
a :class:`GeneratorPool` of its own, and a timed run drives every pool at once,
each process sending its share of the rate (by how many sessions it holds).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from client.loadtest import prepare, report
from client.loadtest.pool import GeneratorPool, PyGenerator
from client.loadtest.prepare import User


async def prepare_users(url: str, n: int, group: int, *, e2ee: bool) -> list[User]:
    """N users signed in with wallets (each with a device for E2EE), in groups of M."""
    users = await prepare.sign_in(url, n, concurrency=32, devices=e2ee)
    await prepare.make_groups(url, users, group, encrypted=e2ee)
    return users


class Sockets:
    """The connected users, step by step, and the load they send."""

    def __init__(self, url: str, users: list[User], *, e2ee: bool, procs: int) -> None:
        self.url = url
        self.users = users
        self.e2ee = e2ee
        self.procs = procs
        self.tag = "F" + secrets.token_hex(3) + "r"
        self.directory = prepare.directory(users) if e2ee else {}
        self.pools: list[tuple[GeneratorPool, list[int]]] = []  # pool, sessions per process
        self.connected = 0
        self.runs = 0

    def _spec(self, mine: list[User]) -> dict[str, Any]:
        conversations = {u.conversation_id for u in mine}
        return {
            "url": self.url,
            "kind": "raw",
            "mode": "e2ee" if self.e2ee else "plaintext",
            "decrypt_every": 100,
            "gap_sync": True,
            "reconnect": True,
            "connect_timeout": 30.0,
            "progress": 0,
            "tag": self.tag,
            "sessions": [u.spec() for u in mine],
            "directory": {c: self.directory[c] for c in conversations if c in self.directory},
        }

    async def grow(self, total: int, ramp: float) -> dict[str, Any]:
        """Connect users[connected:total] through a new pool of generator processes."""
        users = self.users[self.connected : total]
        procs = max(1, min(self.procs, len(users)))
        slices = [users[p::procs] for p in range(procs)]
        pool = GeneratorPool.spawn([self._spec(s) for s in slices])
        self.pools.append((pool, [len(s) for s in slices]))
        result = await pool.connect(ramp, 200)
        self.connected += result["connected"]
        result.pop("connect_ms", None)
        return result

    async def run(
        self, rate: float, duration: float, drain: float, *, start_at: float
    ) -> dict[str, Any]:
        """``rate`` messages/s in total for ``duration`` s from ``start_at`` (a
        ``time.time()``), from every connected socket, each to its own group; then
        up to ``drain`` s for the last deliveries. Counts, latency, errors."""
        self.runs += 1
        total = sum(sum(sizes) for _, sizes in self.pools)

        def command(size: int) -> dict[str, Any]:
            return {"cmd": "run", "run": self.runs, "rate": rate * size / total,
                    "start_at": start_at, "duration": duration, "drain": drain,
                    "text_bytes": 64}  # fmt: skip

        answers = await asyncio.gather(
            *(pool.all([command(size) for size in sizes]) for pool, sizes in self.pools)
        )
        replies = [r for answer in answers for r in answer]
        errors = report.merge_counts([r["errors"] for r in replies])
        return {
            "started_at": start_at,
            "sent": sum(r["sent"] for r in replies),
            "acked": sum(r["acked"] for r in replies),
            "ack_errors": report.merge_counts([r["ack_errors"] for r in replies]),
            "delivered": sum(r["delivered"] + r["delivered_by_sync"] for r in replies),
            "deliveries_per_s": round(sum(r["delivered_in_window"] for r in replies) / duration),
            "latency_ms": report.distribution_ms(report.floats([r["latency"] for r in replies])),
            "disconnects": sum(r["disconnects"] for r in replies),
            "reconnects": sum(r["reconnects"] for r in replies),
            "errors": errors,
        }

    async def close(self) -> None:
        """Close every socket; processes that do not answer in time are killed (and
        every process is killed when we are interrupted while closing)."""
        pools, self.pools = self.pools, []
        self.connected = 0
        for n, (pool, _) in enumerate(pools):
            try:
                await asyncio.wait_for(pool.close(), 60)
            except Exception:
                kill(pool)
            except BaseException:
                for rest, _ in pools[n:]:
                    kill(rest)
                raise


def kill(pool: GeneratorPool) -> None:
    for proc in pool.procs:
        if isinstance(proc, PyGenerator) and proc.proc.is_alive():
            proc.proc.kill()
            proc.proc.join(5)
