"""Parley's fan-out against Node's socket.io and a bare websockets server, one load, one run.

    npm ci --prefix bench/peers
    .venv/bin/python -m bench.peers.run --clients 1000 --group 10 \\
        --rates 300,500,750,1000,1500 --duration 8

Servers (``--servers``; one process each, Redis db 13 where they use Redis):

* ``parley``: ``parley serve`` (1 worker) on PostgreSQL + Redis, the full path:
  wallet-signed users in plaintext groups, every message authenticated,
  checked, persisted with its seq, acked and fanned out through Redis;
* ``parley-fanout``: Parley's socket hub alone (``bench/peers/parley_fanout.py``):
  same Socket.IO server, Redis manager, validation and emits, no database;
* ``parley-fanout-stock``: the same with python-socketio's own emit (a task per
  recipient) instead of ``realtime/fanout.py``: the hot-path change, before/after;
* ``socketio``: Node.js socket.io 4 + @socket.io/redis-adapter
  (``bench/peers/socketio_server.cjs``), the same room fan-out;
* ``websockets``: a bare ``websockets`` broadcast server
  (``bench/peers/ws_server.py``), no Socket.IO library, no Redis: the Python limit.

Every server gets the same sessions (N sockets in groups of M) and the same
ladder of offered loads from the same generator (``parley loadtest``'s, 2
processes), timed as in ``bench/fanout`` (a warm-up, then ``--runs`` runs of
``--duration`` s per rung; deliveries/s and send-to-receive p99). All servers
run at once with their sockets connected, and each rung measures them in turn
(a busy neighbour on the machine then hurts all of them alike). A rung is
sustained when ≥ 99 % of the offered deliveries arrive with p99 ≤ 100 ms and
no error acks; each server's ceiling is its highest sustained rung. Writes
bench/results/peers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as redis_asyncio

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.fanout.run import (  # noqa: E402
    REDIS_URL,
    Generators,
    Node,
    git_commit,
    process_tree,
    settle,
    sign_in,
    summarize,
    timed_run,
)
from client.loadtest import prepare  # noqa: E402
from client.loadtest.generator import raise_fd_limit  # noqa: E402
from tests.support.server import free_port  # noqa: E402

OUT = ROOT / "bench" / "results" / "peers.json"


class Peer:
    """A peer server in a subprocess, on a free port."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> Peer:
        redis = redis_asyncio.Redis.from_url(REDIS_URL)
        await redis.flushdb()
        await redis.aclose()
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - start-up, before any measuring
            self.argv, cwd=ROOT, env=self.env, preexec_fn=raise_fd_limit
        )
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                try:
                    if (await http.get(f"{self.url}/readyz", timeout=1)).status_code == 200:
                        await asyncio.sleep(0.5)
                        return self
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start")

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        assert self.proc is not None
        return process_tree(self.proc.pid)


def synthetic_users(n: int, group: int) -> list[prepare.User]:
    """Sessions for the peers: no sign-in; the token names the user, group and M."""
    users = []
    for _g in range(n // group):
        conversation = str(uuid.uuid4())
        for k in range(group):
            user_id = f"{conversation}.{k}"
            users.append(
                prepare.User(
                    user_id=user_id,
                    access_token=f"{user_id}|{conversation}|{group}",
                    refresh_token="",
                    expires_at=0,
                    conversation_id=conversation,
                )
            )
    return users


def server(name: str, args: argparse.Namespace) -> Any:
    python = str(ROOT / ".venv" / "bin" / "python")
    if name == "parley":
        return Node(1, {"PARLEY_REALTIME_EVENTS_PER_SECOND": "10000"})
    if name in ("parley-fanout", "parley-fanout-stock"):
        env = {"PEERS_REDIS_URL": REDIS_URL, "PEERS_GROUP": str(args.group)}
        if name.endswith("-stock"):
            env["PEERS_STOCK_EMIT"] = "1"
        return Peer(name, [python, "-m", "bench.peers.parley_fanout", "--port", "{port}"], env)
    if name == "socketio":
        return Peer(
            name,
            ["node", str(ROOT / "bench/peers/socketio_server.cjs"), "--port", "{port}",
             "--redis", REDIS_URL],
        )  # fmt: skip
    if name == "websockets":
        return Peer(name, [python, "-m", "bench.peers.ws_server", "--port", "{port}"])
    raise SystemExit(f"unknown server {name!r}")


async def prepare_server(name: str, node: Any, args: argparse.Namespace) -> Generators:
    if name == "parley":
        users = await sign_in(node.url, args.clients)
        await prepare.make_groups(node.url, users, args.group, encrypted=False)
    else:
        users = synthetic_users(args.clients, args.group)
    gens = Generators(node.url, users, args.procs, "raw", False)
    connected = await gens.connect(0, 100)
    print(f"  {name}: connected {connected['connected']} sockets in {connected['seconds']:.1f} s")
    if connected["failed"]:
        await gens.close()
        raise SystemExit(f"{name}: {connected['failed']} sockets did not connect")
    return gens


async def measure_all(args: argparse.Namespace) -> dict[str, Any]:
    """Every server up at once (idle ones cost nothing), rungs interleaved: for each
    offered load, each server in turn, so that a noisy neighbour hurts them alike."""
    names = args.servers.split(",")
    results: dict[str, Any] = {name: {"rungs": []} for name in names}
    async with contextlib.AsyncExitStack() as stack:
        nodes = {}
        gens: dict[str, Generators] = {}
        for name in names:
            nodes[name] = await stack.enter_async_context(server(name, args))
            gens[name] = await prepare_server(name, nodes[name], args)
            stack.push_async_callback(gens[name].close)
        active = list(names)
        for n, rate in enumerate(float(r) for r in args.rates.split(",")):
            print(f"\n== {rate:,.0f} messages/s = {rate * args.group:,.0f} deliveries/s offered")
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in active}
            for i in range(args.runs + 1):  # the first round is a warm-up
                for k, name in enumerate(active):
                    await settle(nodes[name])
                    r = await timed_run(
                        gens[name],
                        nodes[name],
                        run=1000 * n + 10 * i + k + 1,
                        rate=rate,
                        duration=args.duration if i else args.warmup,
                        drain=3.0,
                        group=args.group,
                        text_bytes=64,
                    )
                    if i:
                        runs[name].append(r)
            for name in list(active):
                m = summarize(runs[name])
                cpu = m["cpu_cores"]
                print(
                    f"  {name:<14} {m['deliveries_per_s']:>7,.0f}/s  "
                    f"p50 {m['latency_ms']['p50']:7.1f}  p99 {m['latency_ms']['p99']:7.1f} ms  "
                    f"server {cpu['server']:.2f} cores  gen {cpu['generators']:.2f}  "
                    f"redis {cpu['redis']:.2f}  pg {cpu['postgres']:.2f}  "
                    f"other {cpu['other']:.2f}  "
                    f"{'sustained' if m['sustained'] else 'NOT sustained'}"
                )
                results[name]["rungs"].append(
                    {"messages_per_s": rate, "median": m, "runs": runs[name]}
                )
                if (
                    m["latency_ms"]["p99"] > 2000
                    or m["deliveries_per_s"] < 0.9 * m["offered_deliveries_per_s"]
                ):
                    active.remove(name)  # far past saturation: no higher rungs
            if not active:
                break
    for r in results.values():
        sustained = [x["median"] for x in r["rungs"] if x["median"]["sustained"]]
        best = max(sustained, key=lambda m: m["deliveries_per_s"]) if sustained else None
        r["ceiling_deliveries_per_s"] = best["offered_deliveries_per_s"] if best else 0
        r["at_ceiling"] = best
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="parley,parley-fanout,socketio,websockets")
    parser.add_argument("--clients", type=int, default=1000, help="N sockets")
    parser.add_argument("--group", type=int, default=10, help="M members per group")
    parser.add_argument(
        "--rates", default="300,500,750,1000,1500", help="messages/s to offer, ascending"
    )
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--procs", type=int, default=2, help="generator processes")
    args = parser.parse_args()
    raise_fd_limit()
    results = await measure_all(args)
    print("\n== ceilings (p99 <= 100 ms)")
    base = results.get("socketio", {}).get("ceiling_deliveries_per_s") or 0
    for name, r in results.items():
        ratio = f"{r['ceiling_deliveries_per_s'] / base:.2f}x socket.io" if base else ""
        print(f"  {name:<14} {r['ceiling_deliveries_per_s']:>8,.0f} deliveries/s  {ratio}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "date": datetime.date.today().isoformat(),
                "commit": git_commit(),
                "command": " ".join(["python -m bench.peers.run", *sys.argv[1:]]),
                "config": vars(args),
                "results": results,
            },
            indent=2,
            default=str,
        )
    )
    print(f"\nwritten to {OUT}")


if __name__ == "__main__":
    asyncio.run(main())
