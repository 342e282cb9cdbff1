"""Failure drills: `parley loadtest` through nginx against 2 nodes while something fails.

    .venv/bin/python -m bench.drills.run                       # all four drills
    .venv/bin/python -m bench.drills.run --drills drain,kill --sessions 400 --rate 200
    .venv/bin/python -m bench.drills.run --services shared     # restart this machine's own

Drills (each on a fresh cluster: 2 nodes + nginx, one PostgreSQL database,
one Redis, as scripts/cluster.py starts them):

* ``drain``: SIGTERM to the node holding the most sockets (graceful drain);
  an orchestrator starts it again 2 s after it exits.
* ``kill``: SIGKILL to that node; started again 2 s later.
* ``redis``: Redis shut down without saving and started again.
* ``postgres``: PostgreSQL restarted (fast shutdown: sessions are cut).
* ``baseline``: nothing fails; the same load, for comparison (the machine is
  shared and noisy: compare each drill with the baseline of the same run).

The load runs for ``--duration`` s at ``--rate`` messages/s; the failure
happens ``--at`` s into the sending. Every client is a real wallet-signed
Socket.IO session of `parley loadtest` (E2EE unless ``--plaintext``); they
resend what was not acked after a reconnect and sync what they missed. A drill
passes when no acked message was lost (every member got it, live or by sync),
every client is connected at the end, and every client that lost its socket
was connected again within 10 s.

nginx hashes ``$remote_addr$remote_port`` here instead of the shipped
``$remote_addr``: every generated client comes from 127.0.0.1, and they are
websocket-only (one TCP connection per socket), so the port spreads them over
both nodes like distinct addresses would.

Writes var/drills/<drill>.json (the loadtest report plus the drill's own
numbers) and prints the table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.drills.backends import (
    Backend,
    PrivatePostgres,
    PrivateRedis,
    SharedPostgres,
    SharedRedis,
)
from scripts.cluster import ROOT, Cluster, Node

DRILLS = ("baseline", "drain", "kill", "redis", "postgres")
RECONNECT_BOUND_S = 10.0
OUT = ROOT / "var" / "drills"


def sockets_on(node: Node) -> float:
    try:
        text = httpx.get(f"{node.url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("parley_sockets_connected "):
            return float(line.split()[1])
    return 0.0


class LoadTest:
    """`parley loadtest` in a subprocess; its progress lines are read as they come."""

    def __init__(self, url: str, args: argparse.Namespace, report: Path) -> None:
        command = [
            sys.executable, "-m", "server.cli", "loadtest", url,
            "--sessions", str(args.sessions), "--group-size", str(args.group_size),
            "--rate", str(args.rate), "--duration", str(args.duration),
            "--ramp", str(args.ramp), "--processes", str(args.processes),
            "--drain", "15", "--json", str(report),
        ] + (["--plaintext"] if args.plaintext else [])  # fmt: skip
        self.report = report
        self.lines: list[str] = []
        self.sending_at: float | None = None  # our monotonic clock
        self.offset = 0.0  # our monotonic clock minus the loadtest's "t"
        self.sending = threading.Event()
        self.proc = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if "] sending" in line and not self.sending.is_set():
                # "[  12.0s] sending ..." : seconds since the loadtest's start
                t = float(line.split("]", 1)[0].strip("[ s"))
                self.offset = time.monotonic() - t
                self.sending_at = time.monotonic()
                self.sending.set()

    def wait(self, timeout: float) -> dict[str, Any]:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise RuntimeError("loadtest did not finish:\n" + "\n".join(self.lines[-30:])) from None
        self._reader.join(5)
        if not self.report.exists():
            raise RuntimeError(
                f"loadtest exited {self.proc.returncode} without a report:\n"
                + "\n".join(self.lines[-30:])
            )
        result: dict[str, Any] = json.loads(self.report.read_text())
        return result


def back_within(report: dict[str, Any], fault_t: float) -> float | None:
    """Seconds from the fault until every session was connected again (None: none dropped)."""
    sessions = report["config"]["sessions"]
    dropped_at: float | None = None
    for sample in report["progress"]:
        if sample["t"] < fault_t:
            continue
        if sample["connected"] < sessions and dropped_at is None:
            dropped_at = sample["t"]
        elif dropped_at is not None and sample["connected"] >= sessions:
            return round(float(sample["t"]) - fault_t, 1)
    return None if dropped_at is None else float("inf")


def run_drill(name: str, args: argparse.Namespace) -> dict[str, Any]:
    redis_backend: Backend = SharedRedis() if args.services == "shared" else PrivateRedis()
    pg_backend: Backend = SharedPostgres() if args.services == "shared" else PrivatePostgres()
    workdir = Path(tempfile.mkdtemp(prefix=f"parley-drill-{name}-"))
    cluster = Cluster(
        nodes=2,
        balancer="nginx",
        database_url=pg_backend.url,
        redis_url=redis_backend.url,
        workdir=workdir,
        port=0,
        base_port=0,
        hash_key="$remote_addr$remote_port",
        env={
            "PARLEY_LOG_LEVEL": "WARNING",
            # Loopback: the nginx address is the client address for rate limits.
            "PARLEY_SERVER_FORWARDED_ALLOW_IPS": "127.0.0.1",
        },
    )
    drill: dict[str, Any] = {"drill": name, "services": args.services}
    try:
        redis_backend.start()
        pg_backend.start()
        cluster.start()
        report_path = OUT / f"{name}.loadtest.json"
        report_path.unlink(missing_ok=True)
        load = LoadTest(cluster.url, args, report_path)
        if not load.sending.wait(args.sessions / max(args.ramp, 1) + 300):
            raise RuntimeError("loadtest never started sending:\n" + "\n".join(load.lines[-30:]))
        time.sleep(args.at)
        before = [sockets_on(n) for n in cluster.members]
        drill["sockets_before"] = before
        fault_t = time.monotonic() - load.offset
        drill["fault_at_s"] = round(fault_t, 1)
        if name in ("drain", "kill"):
            victim = cluster.members[before.index(max(before))]
            began = time.monotonic()
            victim.signal(signal.SIGTERM if name == "drain" else signal.SIGKILL)
            drill["node_exit"] = victim.wait(60)
            drill["node_gone_after_s"] = round(time.monotonic() - began, 2)
            drill["sockets_after"] = [sockets_on(n) for n in cluster.members if n is not victim]
            time.sleep(2)  # an orchestrator's restart delay
            victim.start()
        elif name == "redis":
            drill["outage_s"] = round(redis_backend.restart(), 2)
        elif name == "postgres":
            drill["outage_s"] = round(pg_backend.restart(), 2)
        report = load.wait(args.duration + 120)
        drill["loadtest_exit"] = load.proc.returncode
        drill["back_within_s"] = back_within(report, fault_t)
        drill["report"] = report
        conn, msgs = report["connections"], report["messages"]
        slowest = conn["reconnect_ms"]["max"] if conn["reconnect_ms"]["count"] else 0.0
        drill["ok"] = bool(
            msgs["lost_messages"] == 0
            and msgs["lost_deliveries"] == 0
            and msgs["acked"] > 0
            and conn["connected_at_end"] == conn["sessions"]
            and slowest <= 1000 * RECONNECT_BOUND_S
            and (drill["back_within_s"] or 0) <= RECONNECT_BOUND_S
        )
    finally:
        cluster.stop()
        redis_backend.stop()
        pg_backend.stop()
    (OUT / f"{name}.json").write_text(json.dumps(drill, indent=2))
    return drill


def _ms(d: dict[str, Any], *keys: str) -> str:
    if not d.get("count"):
        return "-"
    return " / ".join(f"{d[k]:,.0f}" for k in keys)


def table(drills: list[dict[str, Any]]) -> str:
    rows = [
        "| drill | acked | lost | sockets dropped → back | reconnect ms p50 / p99 / max "
        "| all back after | delivered by sync | latency ms p50 / p99 / max "
        "| ack ms p99 / max | errors seen by clients | result |",
        "| --- | ---: | ---: | --- | --- | ---: | ---: | --- | --- | --- | --- |",
    ]
    for d in drills:
        r = d["report"]
        c, m = r["connections"], r["messages"]
        errors = ", ".join(f"{k} {v}" for k, v in sorted(r["errors"].items())) or "none"
        back = d["back_within_s"]
        # None: no progress sample (one a second) saw a session missing.
        back_text = f"{back} s" if back is not None else "no drop"
        if back is None and c["disconnects"]:
            back_text = "< 1 s"
        rows.append(
            f"| {d['drill']} | {m['acked']:,} | {m['lost_messages']} "
            f"| {c['disconnects']} → {c['reconnects']} "
            f"| {_ms(c['reconnect_ms'], 'p50', 'p99', 'max')} "
            f"| {back_text} | {m['delivered_by_sync']:,} "
            f"| {_ms(r['latency_ms'], 'p50', 'p99', 'max')} "
            f"| {_ms(r['ack_latency_ms'], 'p99', 'max')} | {errors} "
            f"| {'pass' if d['ok'] else 'FAIL'} |"
        )
    return "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.drills.run",
        description="Failure drills: parley loadtest through nginx against 2 nodes while a "
        "node drains or dies, or Redis or PostgreSQL restarts.",
    )
    parser.add_argument("--drills", default=",".join(DRILLS),
                        help=f"comma-separated from {DRILLS} (default: all)")  # fmt: skip
    parser.add_argument("--services", choices=["private", "shared"], default="private",
                        help="restart private PostgreSQL/Redis instances (default) or the "
                        "machine's own (everyone using them sees the outage)")  # fmt: skip
    parser.add_argument("--sessions", type=int, default=100, help="loadtest sessions")
    parser.add_argument("--group-size", type=int, default=5, help="members per group")
    parser.add_argument("--rate", type=float, default=20.0, help="messages/s in total")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of sending")
    parser.add_argument("--at", type=float, default=10.0,
                        help="seconds into the sending when the failure happens")  # fmt: skip
    parser.add_argument("--ramp", type=float, default=200.0, help="connections per second")
    parser.add_argument("--processes", type=int, default=1, help="generator processes")
    parser.add_argument("--plaintext", action="store_true", help="plaintext groups, not E2EE")
    parser.add_argument("--table", action="store_true",
                        help="run nothing; print the results in var/drills")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = [n.strip() for n in args.drills.split(",") if n.strip()]
    unknown = sorted(set(names) - set(DRILLS))
    if unknown:
        print(f"unknown drills {unknown}; choose from {DRILLS}", file=sys.stderr)
        return 2
    if args.table:
        saved = [json.loads((OUT / f"{n}.json").read_text()) for n in names]
        print(table([d for d in saved if d.get("drill") in names]))
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    results = []
    run_id = uuid.uuid4().hex[:6]
    for name in names:
        print(f"[{run_id}] drill {name}…", file=sys.stderr, flush=True)
        try:
            drill = run_drill(name, args)
        except RuntimeError as exc:  # the cluster or the loadtest did not run at all
            print(f"[{run_id}] {name}: could not run: {exc}", flush=True)
            return 1
        extra = {k: drill[k] for k in drill if k not in ("report", "drill", "services")}
        print(f"[{run_id}] {name}: {'pass' if drill['ok'] else 'FAIL'} {extra}", flush=True)
        results.append(drill)
    print()
    print(
        f"{args.sessions} sessions in groups of {args.group_size}, {args.rate:g} msg/s for "
        f"{args.duration:g} s, failure at {args.at:g} s, {os.cpu_count()} CPUs"
    )
    print(table(results))
    return 0 if all(d["ok"] for d in results) else 1


if __name__ == "__main__":
    sys.exit(main())
