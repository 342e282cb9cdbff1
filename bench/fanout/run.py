"""Fan-out on one node: deliveries per second, send-to-receive latency, RSS per socket.

    .venv/bin/python -m bench.fanout.run                      # everything, defaults below
    .venv/bin/python -m bench.fanout.run --part throughput --workers 1,2 --group 10 --rates 1000
    .venv/bin/python -m bench.fanout.run --part memory --sockets 5000
    .venv/bin/python -m bench.fanout.run --part clients       # which load generator is cheapest

Parts:

* ``throughput``: a real node (``parley serve``, 1 worker, and 2 workers with
  Redis fan-out) on PostgreSQL + Redis of this machine with its own database.
  Untimed: N users sign in with wallets (eth-account), groups of M are made
  (plaintext; with ``--encrypted``, encrypted groups whose envelopes the
  generators seal before each run, bench/fanout/README.md), every
  socket connects (websocket transport) through several generator processes
  (``client/loadtest/generator.py``, as ``parley loadtest``). Timed: those
  processes send ``rate`` messages/s in total for ``duration`` s, each from a
  member to its group, with its send time in the ``client_msg_id``; every
  socket records receive time minus send time.
  deliveries/s = messages received (by every member socket, the sender's own
  included) during the send window / window length. A warm-up run precedes the
  timed runs; medians of the runs are reported.
* ``memory``: S idle sockets on a 1-worker node: (VmRSS after connecting -
  VmRSS before) / S, summed over the node's processes.
* ``clients``: CPU per delivered message of each load-generator client (raw
  hand-framed websockets, ``websockets`` sans-I/O, ``websockets`` asyncio, Node
  socket.io-client), each as one process holding the same sockets.

Writes bench/results/fanout.json (merging parts run separately); the tables in
docs/BENCHMARKS.md come from it.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import datetime
import functools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as redis_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.procstat import TICK, process_tree, stat  # noqa: E402
from client.loadtest import prepare  # noqa: E402
from client.loadtest.generator import raise_fd_limit  # noqa: E402
from client.loadtest.pool import GeneratorPool, GeneratorProcess, PyGenerator  # noqa: E402
from crypto.envelope import encrypt_envelope  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402

PG_ADMIN = os.environ.get("PARLEY_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("PARLEY_TEST_REDIS_URL", "redis://127.0.0.1:6379") + "/13"
OUT = ROOT / "bench" / "results" / "fanout.json"

TARGET_DELIVERIES = 10_000
TARGET_P99_MS = 100.0
TARGET_RSS_KB = 50.0
# Encrypted runs: one delivery in this many is verified and decrypted by its receiver.
DECRYPT_EVERY = 500


# -- the node ---------------------------------------------------------------------


class Node:
    """A node on its own PostgreSQL database (and Redis db 13, flushed)."""

    def __init__(self, workers: int, extra_env: dict[str, str] | None = None) -> None:
        self.workers = workers
        self.extra_env = extra_env or {}
        self.db = f"parley_bench_{uuid.uuid4().hex[:8]}"
        self.server: ServerProcess | None = None

    async def __aenter__(self) -> Node:
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'CREATE DATABASE "{self.db}"')
        await admin.close()
        redis = redis_asyncio.Redis.from_url(REDIS_URL)
        await redis.flushdb()
        await redis.aclose()
        env = {
            "PARLEY_DATABASE_URL": PG_ADMIN.rsplit("/", 1)[0] + "/" + self.db,
            "PARLEY_DATABASE_AUTO_MIGRATE": "true",
            "PARLEY_DATABASE_POOL_MAX_SIZE": "20",
            "PARLEY_REDIS_URL": REDIS_URL,
            "PARLEY_AUTH_KEYS_DIR": f"/tmp/{self.db}-keys",
            "PARLEY_SERVER_WORKERS": str(self.workers),
            "PARLEY_AUTH_ACCESS_TOKEN_TTL": "3600",
            # All the load comes from one address; lift the abuse limits.
            "PARLEY_AUTH_OTP_PER_IP_PER_HOUR": "100000",
            "PARLEY_REALTIME_EVENTS_PER_SECOND": "10000",
            "PARLEY_REALTIME_EVENTS_BURST": "100000",
            "PARLEY_LOG_LEVEL": "WARNING",
        }
        env.update(self.extra_env)
        env = {k: v for k, v in env.items() if v != ""}  # KEY= removes a setting
        self.server = ServerProcess(env, name="bench").start(timeout=90)
        # Give the workers (when several) time to open their pools and Redis.
        await asyncio.sleep(1.0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.stop()
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        await admin.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def pids(self) -> list[int]:
        """The serving processes: the `parley serve` process and its descendants."""
        assert self.server is not None and self.server.proc is not None
        return process_tree(self.server.proc.pid)


# -- /proc -------------------------------------------------------------------------


def cpu_ticks(pids: list[int]) -> float:
    """utime + stime of these processes, in seconds."""
    total = 0
    for pid in pids:
        fields = stat(pid)
        if fields is not None:
            total += int(fields[12]) + int(fields[13])
    return total / TICK


def _cpu_line() -> list[int]:
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return [int(f) for f in fields]


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all CPUs; /proc/stat), steal included."""
    ticks = _cpu_line()
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / TICK


def machine_steal() -> float:
    """CPU seconds the hypervisor gave to other guests while ours wanted to run."""
    return _cpu_line()[7] / TICK


async def wait_for_host(max_steal: float, limit: float = 120.0) -> float:
    """Wait (up to ``limit`` s) until the host's steal over 2 s is at most
    ``max_steal`` cores; the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        before = machine_steal()
        await asyncio.sleep(2.0)
        if (machine_steal() - before) / 2.0 <= max_steal:
            break
    return time.perf_counter() - started


def pids_named(*names: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat(int(entry))
            if fields is not None and fields[0] in names:
                out.append(int(entry))
    return out


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


# -- preparation (untimed) ------------------------------------------------------------


async def sign_in(url: str, n: int, *, devices: bool = False) -> list[prepare.User]:
    """N new users signed in by wallet (``parley loadtest``'s preparation); with
    ``devices``, each registers one device's keys (for encrypted groups)."""
    return await prepare.sign_in(url, n, concurrency=32, devices=devices)


async def make_groups(
    url: str, users: list[prepare.User], size: int, *, encrypted: bool = False
) -> None:
    """Groups of ``size`` consecutive users (sets each user's conversation)."""
    await prepare.make_groups(url, users, size, encrypted=encrypted)


def seal_seconds(group: int, messages: int) -> float:
    """How long one generator process takes to encrypt ``messages`` envelopes for
    groups of ``group`` (measured here on a few), so a sealed run starts after them."""
    recipients = {str(uuid.uuid4()): X25519PrivateKey.generate().public_key() for _ in range(group)}
    signer = Ed25519PrivateKey.generate()
    started = time.perf_counter()
    for n in range(3):
        encrypt_envelope(
            payload=b'{"text": "x"}',
            conversation_id=str(uuid.uuid4()),
            sender_user_id=str(uuid.uuid4()),
            sender_device_id=next(iter(recipients)),
            client_msg_id=f"seal-{n}",
            created_at=int(time.time() * 1000),
            content_type="application/json",
            sender_signing_key=signer,
            recipients=recipients,
        )
    return (time.perf_counter() - started) / 3 * messages


# -- generator processes ------------------------------------------------------------------


class NodeGenerator:
    """One loadgen.cjs process (Node socket.io-client), JSON lines over stdin/stdout."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            ["node", str(ROOT / "bench" / "fanout" / "loadgen.cjs")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=raise_fd_limit,
        )
        self.send(spec)
        assert self.recv().get("ready")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def recv(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("node generator exited")
        reply: dict[str, Any] = json.loads(line)
        for key in ("latency", "ack_latency", "received_at", "acked_at"):
            if key + "_b64" in reply:
                reply[key] = base64.b64decode(reply.pop(key + "_b64"))
        return reply

    def stop(self) -> None:
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Generators(GeneratorPool):
    """Several generator processes (``client.loadtest`` or Node), each a slice of the users."""

    def __init__(
        self,
        url: str,
        users: list[prepare.User],
        procs: int,
        kind: str,
        compression: bool,
        encrypted: bool = False,
    ) -> None:
        made: list[GeneratorProcess] = []
        devices = prepare.directory(users) if encrypted else {}
        for p in range(procs):
            mine = users[p::procs]
            spec = {
                "url": url,
                "kind": "raw" if kind == "node" else kind,
                "compression": compression,
                "tag": "B",
                # Measure the fan-out as it comes: no sync on gaps, no reconnects.
                "gap_sync": False,
                "reconnect": False,
                "sessions": [u.spec() for u in mine],
            }
            if encrypted:
                spec["mode"] = "e2ee"
                # Decrypt a sample of what arrives: every envelope must open.
                spec["decrypt_every"] = DECRYPT_EVERY
                spec["directory"] = {u.conversation_id: devices[u.conversation_id] for u in mine}
            made.append(NodeGenerator(spec) if kind == "node" else PyGenerator(spec))
        super().__init__(made)


# -- measuring -------------------------------------------------------------------------


def start_profiler(pid: int, duration: float, output: Path) -> subprocess.Popen[bytes]:
    """py-spy on ``pid`` for ``duration`` s, raw stacks to ``output``."""
    return subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(duration)),
            "--rate",
            "200",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=output.with_suffix(".log").open("wb"),
    )


def git_commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


async def timed_run(
    gens: Generators,
    node: Node,
    *,
    run: int,
    rate: float,
    duration: float,
    drain: float,
    group: int,
    text_bytes: int,
    profile: Path | None = None,
    sealed: bool = False,
) -> dict[str, Any]:
    per_proc = rate / len(gens.procs)
    # Sealed (encrypted) runs: the generators encrypt every envelope before the window.
    ahead = 1.5 * seal_seconds(group, math.ceil(per_proc * duration)) + 1.0 if sealed else 0.0
    start_at = time.time() + 1.0 + ahead
    cmd = {
        "cmd": "run",
        "run": run,
        "rate": per_proc,
        "start_at": start_at,
        "duration": duration,
        "drain": drain,
        "text_bytes": text_bytes,
        "sealed": sealed,
    }
    server_pids = node.pids()
    groups = {
        "server": server_pids,
        "generators": gens.pids,
        "postgres": pids_named("postgres"),
        "redis": pids_named("redis-server"),
    }

    timeline: dict[str, list[float]] = {k: [] for k in groups}
    timeline["machine"] = []

    async def sample_cpu() -> dict[str, float]:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        before = {k: cpu_ticks(v) for k, v in groups.items()}
        before["machine"] = machine_busy()
        before["steal"] = machine_steal()
        t0 = time.perf_counter()
        last = dict(before)
        # Once a second: CPU of each group over that second (a timeline for stalls).
        for second in range(1, int(duration) + 1):
            await asyncio.sleep(max(0.0, t0 + second - time.perf_counter()))
            for k, v in groups.items():
                now = cpu_ticks(v)
                timeline[k].append(round(now - last[k], 2))
                last[k] = now
            now = machine_busy()
            timeline["machine"].append(round(now - last["machine"], 2))
            last["machine"] = now
        await asyncio.sleep(max(0.0, t0 + duration - time.perf_counter()))
        seconds = time.perf_counter() - t0
        cores = {k: (cpu_ticks(v) - before[k]) / seconds for k, v in groups.items()}
        # Everything else on the machine (this runner, the kernel, anything
        # else running): a busy neighbour shows here.
        cores["machine"] = (machine_busy() - before["machine"]) / seconds
        # The hypervisor running other guests on our cores: a busy host, not us.
        cores["steal"] = (machine_steal() - before["steal"]) / seconds
        cores["other"] = cores["machine"] - cores["steal"] - sum(cores[k] for k in groups)
        return cores

    cpu_task = asyncio.create_task(sample_cpu())
    spy = None
    if profile is not None:
        # Profile the busiest serving process (a worker when there are several).
        target = max(server_pids, key=lambda pid: cpu_ticks([pid]))
        spy = start_profiler(target, duration, profile)
    replies = await gens.all(cmd)
    if spy is not None:
        spy.wait(30)
    cpu = await cpu_task
    late = max((r.get("sealed_late_s") or -1.0) for r in replies)
    if late > 0:
        raise SystemExit(f"a generator sealed its envelopes {late:.1f} s past the start: void")
    latency: list[float] = []
    ack_latency: list[float] = []
    # Worst latency per second of the run, by receive time: shows periodic stalls.
    worst = [0.0] * (int(duration + drain) + 2)
    worst_ack = [0.0] * (int(duration + drain) + 2)

    def track(into: list[float], values: array.array[float], times: array.array[float]) -> None:
        for value, at in zip(values, times, strict=True):
            second = min(len(into) - 1, max(0, int(at)))
            into[second] = max(into[second], value)

    for r in replies:
        lat = array.array("f", r["latency"])
        latency.extend(lat)
        track(worst, lat, array.array("f", r["received_at"]))
        ack_lat = array.array("f", r["ack_latency"])
        ack_latency.extend(ack_lat)
        track(worst_ack, ack_lat, array.array("f", r["acked_at"]))
    latency.sort()
    ack_latency.sort()
    sent = sum(r["sent"] for r in replies)
    acked = sum(r["acked"] for r in replies)
    delivered = sum(r["delivered"] for r in replies)
    in_window = sum(r["delivered_in_window"] for r in replies)
    ack_errors: dict[str, int] = {}
    for r in replies:
        for k, v in r["ack_errors"].items():
            ack_errors[k] = ack_errors.get(k, 0) + v
    expected = sent * group  # every member socket, the sender's own included
    result = {
        "started_at": start_at,
        "offered_messages_per_s": rate,
        "offered_deliveries_per_s": rate * group,
        "sent": sent,
        "acked": acked,
        "ack_errors": ack_errors,
        "unacked": sum(r["unacked"] for r in replies),
        "deliveries_per_s": delivered / duration,
        "deliveries_in_window_per_s": in_window / duration,
        "delivered": delivered,
        "expected": expected,
        "missing": expected - delivered,
        "latency_ms": {
            "p50": 1000 * percentile(latency, 50),
            "p95": 1000 * percentile(latency, 95),
            "p99": 1000 * percentile(latency, 99),
            "max": 1000 * (latency[-1] if latency else float("nan")),
        },
        "ack_latency_ms": {
            "p50": 1000 * percentile(ack_latency, 50),
            "p99": 1000 * percentile(ack_latency, 99),
        },
        "cpu_cores": cpu,
        "worst_latency_ms_per_second": [round(1000 * w, 1) for w in worst],
        "worst_ack_latency_ms_per_second": [round(1000 * w, 1) for w in worst_ack],
        "cpu_cores_per_second": timeline,
        "generator_max_behind": max(r["max_behind"] for r in replies),
        "generator_cpu_s_per_process": [round(r["cpu_seconds"], 2) for r in replies],
        "decrypted": sum(r.get("decrypted", 0) for r in replies),
        "decrypt_errors": {
            k: v for r in replies for k, v in r.get("errors", {}).items() if "decrypt" in k
        },
        "disconnects": sum(r["disconnects"] for r in replies),
    }
    return result


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(*path: str) -> float:
        values = []
        for r in runs:
            v: Any = r
            for p in path:
                v = v[p]
            values.append(float(v))
        return statistics.median(values)

    offered = runs[0]["offered_deliveries_per_s"]
    out: dict[str, Any] = {
        "offered_deliveries_per_s": offered,
        "deliveries_per_s": med("deliveries_per_s"),
        "deliveries_in_window_per_s": med("deliveries_in_window_per_s"),
        "latency_ms": {q: med("latency_ms", q) for q in ("p50", "p95", "p99")},
        "ack_latency_ms": {q: med("ack_latency_ms", q) for q in ("p50", "p99")},
        "cpu_cores": {k: med("cpu_cores", k) for k in runs[0]["cpu_cores"]},
        "missing_total": sum(r["missing"] for r in runs),
        "ack_errors_total": sum(sum(r["ack_errors"].values()) for r in runs),
    }
    # Sustained: (nearly) everything offered was delivered, in time, without errors.
    out["sustained"] = bool(
        out["deliveries_per_s"] >= 0.99 * offered
        and out["latency_ms"]["p99"] <= TARGET_P99_MS
        and out["ack_errors_total"] == 0
    )
    out["meets_target"] = bool(
        out["deliveries_per_s"] >= TARGET_DELIVERIES
        and out["latency_ms"]["p99"] <= TARGET_P99_MS
        and out["ack_errors_total"] == 0
    )
    return out


def describe(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    cpu = r["cpu_cores"]
    return (
        f"{r['deliveries_per_s']:,.0f} deliveries/s "
        f"(offered {r['offered_deliveries_per_s']:,.0f}), "
        f"p50 {lat['p50']:.1f} p95 {lat['p95']:.1f} p99 {lat['p99']:.1f} max {lat['max']:.0f} ms, "
        f"ack p50 {r['ack_latency_ms']['p50']:.1f} ms, missing {r['missing']}, "
        f"errors {sum(r['ack_errors'].values())}, cpu server {cpu['server']:.2f} "
        f"gen {cpu['generators']:.2f} pg {cpu['postgres']:.2f} redis {cpu['redis']:.2f} "
        f"other {cpu['other']:.2f} steal {cpu.get('steal', 0.0):.2f}"
        + (f", decrypted {r['decrypted']}" if r.get("decrypted") else "")
        + (f", decrypt errors {r['decrypt_errors']}" if r.get("decrypt_errors") else "")
    )


async def settle(node: Node, limit: float = 90.0) -> float:
    """Wait until the node is idle (a backlog from an overloaded run is worked off)."""
    started = time.perf_counter()
    pids = node.pids()
    while time.perf_counter() - started < limit:
        before = cpu_ticks(pids)
        await asyncio.sleep(1.0)
        if cpu_ticks(pids) - before < 0.1:
            break
    return time.perf_counter() - started


# -- parts ------------------------------------------------------------------------------


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """Extra PARLEY_* settings for the node (--server-env KEY=VALUE, for experiments)."""
    return dict(item.split("=", 1) for item in args.server_env)


def ladder(args: argparse.Namespace, group: int) -> list[float]:
    """Messages/s to offer: explicit --rates, else fractions of the target load."""
    if args.rates:
        return [float(r) for r in args.rates.split(",")]
    return [float(f) * TARGET_DELIVERIES / group for f in args.ladder.split(",")]


async def measure_rate(
    args: argparse.Namespace,
    gens: Generators,
    node: Node,
    *,
    rate: float,
    group: int,
    workers: int,
    first_run: int,
) -> dict[str, Any]:
    run_number = first_run
    at_rate = functools.partial(
        timed_run,
        gens,
        node,
        rate=rate,
        drain=args.drain,
        group=group,
        text_bytes=args.text_bytes,
        sealed=args.encrypted,
    )
    await settle(node)
    warm = await at_rate(run=run_number, duration=args.warmup)
    print(f"    {rate:,.0f} msg/s warm-up: {describe(warm)}")
    runs = []
    disturbed: list[dict[str, Any]] = []
    for i in range(args.runs):
        profile = None
        if args.profile and i == 0:
            profile = OUT.parent / f"fanout-profile-w{workers}-m{group}-r{rate:g}.txt"
        for attempt in range(args.retries + 1):
            run_number += 1
            waited = await settle(node)
            if args.max_steal is not None:
                waited += await wait_for_host(args.max_steal)
            result = await at_rate(run=run_number, duration=args.duration, profile=profile)
            result["settled_s"] = round(waited, 1)
            steal = result["cpu_cores"]["steal"]
            if args.max_steal is None or steal <= args.max_steal or attempt == args.retries:
                break
            # The host took our cores during the run: it says nothing about
            # the node. Kept in the results, and the run is made again.
            print(f"    {rate:,.0f} msg/s run {i + 1} disturbed: {describe(result)}")
            result["disturbed"] = True
            disturbed.append(result)
        print(f"    {rate:,.0f} msg/s run {i + 1}: {describe(result)}")
        runs.append(result)
    summary = summarize(runs)
    summary["disturbed_runs_repeated"] = len(disturbed)
    lat = summary["latency_ms"]
    print(
        f"    {rate:,.0f} msg/s median: {summary['deliveries_per_s']:,.0f} deliveries/s, "
        f"p50/p95/p99 {lat['p50']:.1f}/{lat['p95']:.1f}/{lat['p99']:.1f} ms, "
        f"sustained: {summary['sustained']}"
    )
    return {"messages_per_s": rate, "median": summary, "runs": runs, "disturbed": disturbed}


async def throughput(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    groups = [int(m) for m in args.groups.split(",")]
    for workers in [int(w) for w in args.workers.split(",")]:
        print(
            f"\n== throughput: {workers} worker(s), {args.clients} clients, "
            f"{args.procs} generator processes ({args.client})"
        )
        async with Node(workers, server_env(args)) as node:
            started = time.perf_counter()
            users = await sign_in(node.url, args.clients, devices=args.encrypted)
            print(f"  signed in {len(users)} users in {time.perf_counter() - started:.1f} s")
            for group in groups:
                await make_groups(node.url, users, group, encrypted=args.encrypted)
                conversations = [u.conversation_id for u in users]
                gens = Generators(
                    node.url, users, args.procs, args.client, args.compression, args.encrypted
                )
                rungs: list[dict[str, Any]] = []
                try:
                    connected = await gens.connect(0, args.connect_concurrency)
                    print(
                        f"  groups of {group} ({len(set(conversations))} groups): connected "
                        f"{connected['connected']} sockets in {connected['seconds']:.1f} s "
                        f"({connected['failed']} failed {connected['errors'] or ''})"
                    )
                    if connected["failed"]:
                        raise SystemExit("some sockets did not connect; the measurement is void")
                    rates = ladder(args, group)
                    collapsed = False
                    for n, rate in enumerate(rates):
                        last = n == len(rates) - 1
                        if collapsed and not last:
                            print(f"    {rate:,.0f} msg/s skipped: a lower rate already failed")
                            continue
                        rung = await measure_rate(
                            args,
                            gens,
                            node,
                            rate=rate,
                            group=group,
                            workers=workers,
                            first_run=1000 * (n + 1),
                        )
                        rungs.append(rung)
                        m = rung["median"]
                        # Far past saturation: higher rungs only collapse further.
                        collapsed = collapsed or (
                            m["deliveries_in_window_per_s"] < 0.9 * m["offered_deliveries_per_s"]
                            or m["latency_ms"]["p99"] > 2000
                        )
                finally:
                    await gens.close()
                sustained = [
                    r["median"]["offered_deliveries_per_s"]
                    for r in rungs
                    if r["median"]["sustained"]
                ]
                at_target = [
                    r for r in rungs if r["median"]["offered_deliveries_per_s"] >= TARGET_DELIVERIES
                ]
                results[f"workers_{workers}_group_{group}"] = {
                    "workers": workers,
                    "group": group,
                    "mode": "encrypted" if args.encrypted else "plaintext",
                    "ceiling_deliveries_per_s": max(sustained) if sustained else 0,
                    "at_target": at_target[0]["median"] if at_target else None,
                    "meets_target": bool(at_target and at_target[0]["median"]["meets_target"]),
                    "rungs": rungs,
                }
                print(
                    f"  => groups of {group}, {workers} worker(s): highest sustained load "
                    f"{max(sustained) if sustained else 0:,.0f} deliveries/s; target met: "
                    f"{results[f'workers_{workers}_group_{group}']['meets_target']}"
                )
                await settle(node)
    return {
        "config": {
            "clients": args.clients,
            "groups": groups,
            "ladder": args.rates or args.ladder,
            "ladder_unit": "messages/s" if args.rates else "fraction of 10,000 deliveries/s",
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "drain_s": args.drain,
            "runs": args.runs,
            "max_steal": args.max_steal,
            "generator_processes": args.procs,
            "client": args.client,
            "compression": args.compression,
            "text_bytes": args.text_bytes,
            "mode": "plaintext",
            "transport": "websocket",
            "server_env": server_env(args),
        },
        "results": results,
    }


async def memory(args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"\n== memory: {args.sockets} idle sockets, {args.memory_workers} worker(s), "
        f"{args.memory_procs} generator processes ({args.client})"
    )
    async with Node(args.memory_workers, server_env(args)) as node:
        users = await sign_in(node.url, args.sockets)
        # Idle sockets: no groups, nothing sent.
        for u in users:
            u.conversation_id = "00000000-0000-0000-0000-000000000000"
        clients = users
        # Warm up the socket code paths (imports, caches), then take the baseline.
        warm = Generators(node.url, clients[:100], 1, args.client, args.compression)
        await warm.connect(0, 50)
        await warm.close()
        await asyncio.sleep(3.0)
        pids = node.pids()
        before = rss_kb(pids)
        # Connect a fifth first, then the rest: (after - before) / S is the target's
        # measure; the slope between the two steps is the marginal cost per socket,
        # which memory freed by the sign-ins and reused by the first sockets cannot flatter.
        first = args.sockets // 5
        step_a = Generators(node.url, clients[:first], args.memory_procs, args.client, False)
        step_b = Generators(node.url, clients[first:], args.memory_procs, args.client, False)
        try:
            a = await step_a.connect(0, args.connect_concurrency)
            await asyncio.sleep(5.0)
            middle = rss_kb(pids)
            b = await step_b.connect(0, args.connect_concurrency)
            connected = a["connected"] + b["connected"]
            print(
                f"  connected {connected} in {a['seconds'] + b['seconds']:.1f} s "
                f"({a['failed'] + b['failed']} failed {a['errors'] or ''}{b['errors'] or ''})"
            )
            if a["failed"] or b["failed"]:
                raise SystemExit("some sockets did not connect; the measurement is void")
            samples = {}
            waited = 0.0
            # After the connect burst settles, and after a full ping round.
            for at in (5.0, args.memory_settle):
                await asyncio.sleep(at - waited)
                waited = at
                samples[f"{at:g}s"] = rss_kb(pids)
            after = samples[f"{args.memory_settle:g}s"]
            gen_rss = rss_kb(step_a.pids + step_b.pids)
        finally:
            await step_a.close()
            await step_b.close()
        await asyncio.sleep(3.0)
        after_close = rss_kb(pids)
    per_socket = (after - before) / connected
    marginal = (after - middle) / (connected - a["connected"])
    result = {
        "sockets": connected,
        "workers": args.memory_workers,
        "server_processes": len(pids),
        "rss_before_kb": before,
        "rss_after_first_step_kb": middle,
        "first_step_sockets": a["connected"],
        "rss_after_kb": after,
        "rss_samples_kb": samples,
        "rss_after_close_kb": after_close,
        "kb_per_socket": per_socket,
        "marginal_kb_per_socket": marginal,
        "kb_per_socket_samples": {k: (v - before) / connected for k, v in samples.items()},
        "generator_kb_per_socket": gen_rss / connected,
        "meets_target": per_socket <= TARGET_RSS_KB,
    }
    print(
        f"  RSS {before / 1024:.0f} MiB -> {middle / 1024:.0f} MiB ({a['connected']}) -> "
        f"{after / 1024:.0f} MiB ({connected}): {per_socket:.1f} KB/socket, marginal "
        f"{marginal:.1f} KB/socket; after close {after_close / 1024:.0f} MiB; "
        f"target met: {result['meets_target']}"
    )
    return result


async def clients_part(args: argparse.Namespace) -> dict[str, Any]:
    """CPU per delivered message for each generator client, on one 1-worker node."""
    kinds = args.kinds.split(",")
    n, group, rate = args.compare_clients, args.compare_group, args.compare_rate
    print(
        f"\n== client cost: {n} sockets in groups of {group}, {rate:g} messages/s, "
        f"one generator process per kind"
    )
    out: dict[str, Any] = {}
    async with Node(1, server_env(args)) as node:
        users = await sign_in(node.url, n)
        await make_groups(node.url, users, group)
        clients = users
        run_number = 0
        for kind in kinds:
            gens = Generators(node.url, clients, 1, kind, args.compression)
            try:
                await asyncio.sleep(0.5)
                rss_before = rss_kb(gens.pids)
                connected = await gens.connect(0, args.connect_concurrency)
                rss_after = rss_kb(gens.pids)
                runs = []
                for i in range(args.runs + 1):  # the first is a warm-up
                    run_number += 1
                    r = await timed_run(
                        gens,
                        node,
                        run=run_number,
                        rate=rate,
                        duration=args.compare_duration,
                        drain=args.drain,
                        group=group,
                        text_bytes=args.text_bytes,
                    )
                    if i:
                        runs.append(r)
                us = [
                    1e6 * sum(r["generator_cpu_s_per_process"]) / max(1, r["delivered"])
                    for r in runs
                ]
                out[kind] = {
                    "connected": connected["connected"],
                    "cpu_us_per_delivery": statistics.median(us),
                    "runs_cpu_us_per_delivery": us,
                    "generator_cores": statistics.median(
                        r["cpu_cores"]["generators"] for r in runs
                    ),
                    "deliveries_per_s": statistics.median(r["deliveries_per_s"] for r in runs),
                    "latency_p50_ms": statistics.median(r["latency_ms"]["p50"] for r in runs),
                    "latency_p99_ms": statistics.median(r["latency_ms"]["p99"] for r in runs),
                    "client_kb_per_socket": (rss_after - rss_before)
                    / max(1, connected["connected"]),
                }
                print(
                    f"  {kind}: {out[kind]['cpu_us_per_delivery']:.1f} µs CPU per delivery "
                    f"(runs {', '.join(f'{u:.1f}' for u in us)}), "
                    f"{out[kind]['client_kb_per_socket']:.0f} KB/socket in the client, "
                    f"p50 {out[kind]['latency_p50_ms']:.1f} ms"
                )
            finally:
                await gens.close()
            await asyncio.sleep(1.0)
    return {
        "config": {
            "sockets": n,
            "group": group,
            "messages_per_s": rate,
            "duration_s": args.compare_duration,
            "runs": args.runs,
            "compression": args.compression,
        },
        "results": out,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part",
        default="clients,throughput,memory",
        help="comma-separated: clients, throughput, memory",
    )
    parser.add_argument("--workers", default="1,2", help="worker counts to measure (default 1,2)")
    parser.add_argument("--clients", type=int, default=1000, help="N: sockets (one per user)")
    parser.add_argument(
        "--groups", default="10,100", help="M: members per group, comma-separated (default 10,100)"
    )
    parser.add_argument(
        "--ladder",
        default="0.1,0.2,0.3,0.4,0.5,0.6,0.75,1",
        help="offered loads as fractions of 10,000 deliveries/s (messages/s = that / M)",
    )
    parser.add_argument(
        "--rates",
        default="",
        help="total messages/s, comma-separated, instead of --ladder (same for every M)",
    )
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per timed run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of the warm-up run")
    parser.add_argument(
        "--drain", type=float, default=5.0, help="seconds to keep receiving after a run"
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs (median reported)")
    parser.add_argument(
        "--max-steal",
        type=float,
        default=None,
        help="throughput: wait before each run until the host's steal time is at most this "
        "many cores, and make a run again (up to --retries times) if its steal exceeded "
        "it; repeated runs stay in the results as 'disturbed' (default: off)",
    )
    parser.add_argument(
        "--retries", type=int, default=2, help="with --max-steal: repeats of a disturbed run"
    )
    parser.add_argument("--procs", type=int, default=2, help="generator processes")
    parser.add_argument(
        "--client",
        default="raw",
        choices=["raw", "ws", "ws-asyncio", "node"],
        help="generator client (default raw: Socket.IO over hand-framed websockets; "
        "the cheapest, see --part clients)",
    )
    parser.add_argument(
        "--compression",
        action="store_true",
        help="clients offer permessage-deflate (the server accepts it)",
    )
    parser.add_argument("--text-bytes", type=int, default=64, help="length of each text")
    parser.add_argument(
        "--encrypted",
        action="store_true",
        help="throughput: encrypted groups; every user registers a device, every message "
        "is an envelope for all members' devices, made before its run (sealed) and checked "
        "by the server (signature, recipients); latency counts from each message's due time",
    )
    parser.add_argument("--connect-concurrency", type=int, default=50)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="throughput: py-spy the busiest server process during run 1 "
        "(bench/results/fanout-profile-*.txt; summarize with "
        "python -m bench.fanout.profile)",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra setting for the node, e.g. PARLEY_REALTIME_PRESENCE_HEARTBEAT=60; KEY= "
        "removes one (repeatable)",
    )
    parser.add_argument("--sockets", type=int, default=5000, help="memory: idle sockets")
    parser.add_argument("--memory-workers", type=int, default=1, help="memory: workers")
    parser.add_argument("--memory-procs", type=int, default=4, help="memory: generator processes")
    parser.add_argument(
        "--memory-settle",
        type=float,
        default=35.0,
        help="memory: seconds after connecting to read RSS (past a ping round)",
    )
    parser.add_argument(
        "--kinds", default="raw,ws,ws-asyncio,node", help="clients: kinds to compare"
    )
    parser.add_argument("--compare-clients", type=int, default=500, help="clients: sockets")
    parser.add_argument("--compare-group", type=int, default=50, help="clients: M")
    parser.add_argument("--compare-rate", type=float, default=100.0, help="clients: messages/s")
    parser.add_argument("--compare-duration", type=float, default=10.0, help="clients: seconds")
    args = parser.parse_args()
    raise_fd_limit()

    report: dict[str, Any] = {}
    if OUT.exists():
        report = json.loads(OUT.read_text())
    commit = git_commit()
    report["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    stamp = {
        "date": datetime.date.today().isoformat(),
        "commit": commit,
        "command": " ".join(["python -m bench.fanout.run", *sys.argv[1:]]),
    }
    parts = args.part.split(",")
    try:
        if "clients" in parts:
            report["clients"] = {**stamp, **await clients_part(args)}
        if "throughput" in parts:
            key = "throughput_encrypted" if args.encrypted else "throughput"
            report[key] = {**stamp, **await throughput(args)}
        if "memory" in parts:
            report["memory"] = {**stamp, **await memory(args)}
    finally:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(report, indent=2, default=str))
        print(f"\nwritten to {OUT}")


if __name__ == "__main__":
    asyncio.run(main())
