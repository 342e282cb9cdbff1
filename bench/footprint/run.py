"""Memory of the whole stack on one small host: nginx, one Parley node, PostgreSQL, Redis.

    .venv/bin/python -m bench.footprint.run                        # both profiles, defaults
    .venv/bin/python -m bench.footprint.run --profiles postgres --sockets 1000,5000 --rate 200
    .venv/bin/python -m bench.footprint.run --profiles postgres --services own \\
        --pg-set shared_buffers=64MB --pg-set max_connections=20 --redis-set maxmemory=64mb \\
        --server-env PARLEY_DATABASE_POOL_MAX_SIZE=5 --label small-host   # a small host
    .venv/bin/python -m bench.footprint.run --table                # the tables of the JSON

Per profile (``postgres``: PostgreSQL + Redis; ``embedded``: SQLite and the
in-memory fan-out, what ``make run`` starts), the stack starts (bench/footprint/
stack.py) and every component's PSS and RSS, summed over its processes, is read
from /proc/<pid>/smaps_rollup once a second through these phases:

1. idle, ``--idle`` s;
2. sign-in: the largest step's users sign in with wallets (and register a
   device each, for E2EE) through nginx and are put in groups of ``--group``,
   as ``parley loadtest`` prepares them;
3. per step of ``--sockets`` (cumulative): the step's new users connect one
   websocket each through nginx (the load generator's processes, ramp
   ``--ramp``/s); ``--hold`` s with the sockets idle (past a ping round); then
   ``--rate`` messages/s (E2EE envelopes unless ``--plaintext``), each from a
   member to its group, for ``--duration`` s;
4. after every socket closed, ``--after`` s.

Prints, per phase, the median and peak PSS of each component and of the total
(per-sample sums), writes everything (samples included) to
bench/results/footprint.json, merging runs under ``--label``.

The generator's pieces are used directly (``client.loadtest.prepare`` and
``GeneratorPool``), as bench/fanout does: ``parley loadtest`` itself connects
every session at once and sends straight away, with no steps and no idle hold.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.footprint.load import Sockets, prepare_users  # noqa: E402
from bench.footprint.memory import Sampler, summarize  # noqa: E402
from bench.footprint.stack import Profile, Stack, StackOptions  # noqa: E402
from bench.footprint.table import answer, print_table  # noqa: E402
from client.loadtest.generator import raise_fd_limit  # noqa: E402

OUT = ROOT / "bench" / "results" / "footprint.json"


async def measure(profile: Profile, args: argparse.Namespace) -> dict[str, Any]:
    options = StackOptions(
        profile=profile,
        services=args.services,
        pg_settings=pairs(args.pg_set),
        redis_settings=pairs(args.redis_set),
        node_env=pairs(args.server_env),
    )
    steps = sorted(int(n) for n in args.sockets.split(","))
    print(
        f"\n== {profile} ({args.services} services)" if profile == "postgres" else "\n== embedded"
    )
    async with Stack(options) as stack:
        sampler = Sampler(stack.sources(), stack.context())
        sampling = asyncio.create_task(sampler.run())
        sockets: Sockets | None = None
        out: dict[str, Any] = {"connects": {}, "runs": {}}
        try:
            await warm_up(stack.url)
            await phase(sampler, "idle", args.idle)
            sampler.phase = "sign-in"
            started = time.perf_counter()
            users = await prepare_users(stack.url, steps[-1], args.group, e2ee=not args.plaintext)
            out["sign_in_s"] = round(time.perf_counter() - started, 1)
            print(f"  {len(users)} users signed in, groups of {args.group}: {out['sign_in_s']} s")
            sockets = Sockets(stack.url, users, e2ee=not args.plaintext, procs=args.procs)
            for n in steps:
                sampler.phase = f"connect {n}"
                connect = await sockets.grow(n, args.ramp)
                out["connects"][str(n)] = connect
                print(
                    f"  {sockets.connected} sockets ({connect['failed']} failed "
                    f"{connect['errors'] or ''}) in {connect['seconds']:.1f} s"
                )
                if connect["failed"]:
                    raise SystemExit("some sockets did not connect: the measurement is void")
                await phase(sampler, f"{n} sockets", args.hold)
                run = await load(sampler, sockets, n, args)
                out["runs"][str(n)] = run
                lat = run["latency_ms"]
                print(
                    f"  {n} sockets, {args.rate:g} msg/s: sent {run['sent']}, acked "
                    f"{run['acked']}, {run['deliveries_per_s']} deliveries/s, p50 {lat['p50']} "
                    f"p99 {lat['p99']} ms, errors {run['errors'] or 'none'}"
                )
            sampler.phase = "closing"
            await sockets.close()
            sockets = None
            await phase(sampler, "closed", args.after)
            if stack.redis is not None:
                out["redis_parley_keys_mib"] = round(await stack.redis.our_keys_bytes() / 2**20, 2)
            out["settings"] = await stack.settings()
        finally:
            sampling.cancel()
            if sockets is not None:
                await sockets.close()
    phases = list(dict.fromkeys(s.phase for s in sampler.samples))
    out["phases"] = {name: summarize(sampler.of(name)) for name in phases}
    out["samples"] = [s.to_json() for s in sampler.samples]
    out["steps"] = steps
    out["rate"] = args.rate
    out["answer"] = answer(out, args.budget_mib, args.os_mib)
    return out


async def warm_up(url: str) -> None:
    """The first requests through nginx (its workers and the node's first routes)."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        for path in ("/healthz", "/readyz", "/healthz"):
            (await http.get(path)).raise_for_status()


async def phase(sampler: Sampler, name: str, seconds: float) -> None:
    sampler.phase = name
    await asyncio.sleep(seconds)


async def load(
    sampler: Sampler, sockets: Sockets, n: int, args: argparse.Namespace
) -> dict[str, Any]:
    """The timed message load; the phase covers its window, then its drain."""

    async def label() -> None:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        sampler.phase = f"{n} sockets + {args.rate:g} msg/s"
        await asyncio.sleep(args.duration)
        sampler.phase = f"drain {n}"

    start_at = time.time() + 1.0
    labelling = asyncio.create_task(label())
    try:
        return await sockets.run(args.rate, args.duration, args.drain, start_at=start_at)
    finally:
        labelling.cancel()


def pairs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"expected KEY=VALUE, not {item!r}")
        out[key] = value
    return out


def machine() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()
    return {
        "cpus": os.cpu_count(),
        "mem_total_mib": int(meminfo[1]) // 1024,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def git_commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--profiles", default="postgres,embedded", help="postgres, embedded")
    p.add_argument(
        "--services",
        choices=["shared", "own"],
        default="shared",
        help="PostgreSQL/Redis: this machine's (a fresh database, key prefix and "
        "channel) or throwaway ones of our own (see --pg-set, --redis-set)",
    )
    p.add_argument(
        "--pg-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --services own: a postgresql.conf setting (repeatable)",
    )
    p.add_argument(
        "--redis-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --services own: a redis-server option, e.g. maxmemory=64mb",
    )
    p.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra PARLEY_* setting for the node; KEY= removes one",
    )
    p.add_argument("--sockets", default="1000,5000", help="socket steps (cumulative)")
    p.add_argument("--group", type=int, default=10, help="members per group")
    p.add_argument("--rate", type=float, default=200.0, help="messages/s in the load phases")
    p.add_argument("--plaintext", action="store_true", help="plaintext groups, not E2EE")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of each load phase")
    p.add_argument("--drain", type=float, default=5.0, help="seconds after a load phase")
    p.add_argument("--idle", type=float, default=15.0, help="seconds idle at the start")
    p.add_argument(
        "--hold",
        type=float,
        default=35.0,
        help="seconds with the sockets connected and idle (past a 25 s ping round)",
    )
    p.add_argument("--after", type=float, default=15.0, help="seconds after closing the sockets")
    p.add_argument("--ramp", type=float, default=500.0, help="new connections per second")
    p.add_argument("--procs", type=int, default=2, help="generator processes per step")
    p.add_argument("--budget-mib", type=float, default=1024.0, help="the host's memory")
    p.add_argument("--os-mib", type=float, default=200.0, help="left for the OS")
    p.add_argument("--label", default="", help="key in the JSON (default: profile[-services])")
    p.add_argument("--out", type=Path, default=OUT, help="JSON results (merged)")
    p.add_argument("--table", action="store_true", help="only print the tables of --out")
    return p


async def main() -> None:
    args = parser().parse_args()
    if (args.pg_set or args.redis_set) and args.services != "own":
        raise SystemExit("--pg-set and --redis-set need --services own")
    raise_fd_limit()
    task = asyncio.current_task()
    assert task is not None
    # SIGTERM as Ctrl-C: cancel, so that everything started is stopped and removed.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    report: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.table:
        for key, result in report.items():
            print(f"\n{result['date']}, commit {result['commit']}: {result['command']}")
            print_table(key, result)
        return
    stamp = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "command": " ".join(["python -m bench.footprint.run", *sys.argv[1:]]),
        "machine": machine(),
    }
    for profile in args.profiles.split(","):
        if profile != "postgres" and profile != "embedded":
            raise SystemExit(f"unknown profile {profile!r}")
        result = await measure(profile, args)
        key = args.label or (f"{profile}-{args.services}" if profile == "postgres" else profile)
        report[key] = {**stamp, **result}
        print_table(key, result)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
        print(f"written to {args.out} under {key!r}")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted: everything started was stopped and removed", file=sys.stderr)
        sys.exit(130)
