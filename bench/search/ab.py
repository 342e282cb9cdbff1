"""This checkout against an earlier commit, on the same data, in the same minutes.

    .venv/bin/python -m bench.search.ab --baseline 0f6b8b5          # search and matching
    .venv/bin/python -m bench.search.ab --baseline 0f6b8b5 --directory 0   # search only

The machine is shared, so absolute numbers drift by a factor of two between
runs. Here two nodes run side by side on one database, one Redis and one key
directory: "new" from this checkout and "old" from ``git archive`` of the
baseline (its own code, the same virtualenv). Every measurement alternates
between them so both see the same noise:

- searches one at a time: each query goes to both, in alternating order;
- searches ``--concurrency`` in flight: blocks of a quarter of the requests,
  new, old, old, new, ... (the two nodes never share the cores at once), with
  the CPU of the active node and of PostgreSQL per search;
- address books (``--directory``): first uploads of distinct owners,
  alternating, then one owner per node re-uploading its book, alternating.

Writes bench/results/search-ab-<timestamp>.json and prints the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import tests.support.server as server_module  # noqa: E402
from bench.search import phones, seed  # noqa: E402
from bench.search.client import Account, Request, fire, sign_in  # noqa: E402
from bench.search.cpu import CpuMeter  # noqa: E402
from bench.search.people import PeopleGenerator  # noqa: E402
from bench.search.queries import QueryMix  # noqa: E402
from bench.search.run import (  # noqa: E402
    BLOCKS,
    LISTED_BY,
    git_state,
    indexer_caught_up,
    quiet,
    scratch_deployment,
    vacuum,
    wait_quiet,
    write_report,
)
from bench.search.scenarios import check_matches, make_searchers, search_request  # noqa: E402
from bench.search.stats import summary  # noqa: E402
from config.keys import load_server_keys  # noqa: E402
from config.settings import AuthSettings  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402

TARGET_SEARCH_MS = 50
TARGET_MATCH_MS = 1000


def export(ref: str) -> Path:
    """The tree of ``ref``, extracted once under /tmp."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    target = Path(f"/tmp/parley-ab-{commit}")
    if not (target / "server").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", commit], cwd=ROOT, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def start_node(env: dict[str, str], tree: Path, name: str) -> ServerProcess:
    """A node running the code in ``tree`` (ServerProcess starts it in ROOT; point it there)."""
    saved = server_module.ROOT
    server_module.ROOT = tree
    try:
        return ServerProcess(env, name=name).start(timeout=120)
    finally:
        server_module.ROOT = saved


async def timed(session: aiohttp.ClientSession, request: Request) -> tuple[float, Any]:
    started = time.perf_counter()
    async with session.request(
        request.method,
        request.path,
        headers=request.headers,
        params=request.params,
        json=request.json,
    ) as response:
        body = await response.json()
    seconds = time.perf_counter() - started
    if response.status != 200:
        raise SystemExit(f"{request.method} {request.path}: {response.status} {body}")
    return seconds, body


def by_kind(seconds: list[float], tags: list[str]) -> dict[str, Any]:
    return {
        kind: summary([s for s, t in zip(seconds, tags, strict=True) if t == kind])
        for kind in sorted(set(tags))
    }


async def search_sequential(
    sessions: dict[str, aiohttp.ClientSession], searchers: list[Account], mix: QueryMix, n: int
) -> dict[str, Any]:
    """Each query to both nodes, one at a time, the order alternating."""
    seconds: dict[str, list[float]] = {name: [] for name in sessions}
    tags: list[str] = []
    names = list(sessions)
    for i, query in enumerate(mix.draw(n)):
        request = search_request(query, searchers[i % len(searchers)])
        tags.append(request.tag)
        for name in names if i % 2 == 0 else names[::-1]:
            spent, _ = await timed(sessions[name], request)
            seconds[name].append(spent)
    return {name: {"all": summary(s), "by_kind": by_kind(s, tags)} for name, s in seconds.items()}


async def search_concurrent(
    sessions: dict[str, aiohttp.ClientSession],
    meters: dict[str, CpuMeter],
    searchers: list[Account],
    mix: QueryMix,
    n: int,
    concurrency: int,
) -> dict[str, Any]:
    """Blocks of n/4 searches with ``concurrency`` in flight: new, old, old, new, new, old..."""
    block = max(1, n // 4)
    seconds: dict[str, list[float]] = {name: [] for name in sessions}
    tags: dict[str, list[str]] = {name: [] for name in sessions}
    cpu: dict[str, dict[str, float]] = {name: {} for name in sessions}
    wall: dict[str, float] = dict.fromkeys(sessions, 0.0)
    names = list(sessions)
    for round_ in range(4):
        queries = mix.draw(block)
        requests = [search_request(q, searchers[i % len(searchers)]) for i, q in enumerate(queries)]
        for name in names if round_ % 2 == 0 else names[::-1]:
            await meters[name].start()
            outcome = await fire(sessions[name], requests, concurrency, keep=False)
            spent = await meters[name].stop()
            if outcome.errors:
                raise SystemExit(f"{name}: {outcome.errors[0]}")
            seconds[name] += outcome.seconds
            tags[name] += outcome.tags
            wall[name] += outcome.wall
            for group, value in spent.items():
                cpu[name][group] = cpu[name].get(group, 0.0) + value
    return {
        name: {
            "all": summary(seconds[name]),
            "by_kind": by_kind(seconds[name], tags[name]),
            "per_s": round(len(seconds[name]) / wall[name], 1),
            "cpu_ms_per_request": {
                k: round(v * 1000 / len(seconds[name]), 2) for k, v in cpu[name].items()
            },
        }
        for name in sessions
    }


async def matching(
    sessions: dict[str, aiohttp.ClientSession],
    nodes: dict[str, ServerProcess],
    conn: asyncpg.Connection,
    secret: bytes,
    generator: PeopleGenerator,
    people: list[Any],
    args: argparse.Namespace,
) -> dict[str, Any]:
    started = time.perf_counter()
    numbers = phones.directory_numbers(args.directory)
    phones.check_valid(numbers)
    more = await seed.add_people(
        conn, generator, args.directory - len(people), start=len(people), indexed=False
    )
    users = [uid for uid, _ in people] + [uid for uid, _ in more]
    await seed.add_directory(conn, secret, zip(numbers, users, strict=True))
    print(f"  directory seeded in {time.perf_counter() - started:.1f} s", flush=True)
    await vacuum(conn, ["users", "profiles", "phone_directory"])
    rng = random.Random(11)
    registered = set(numbers)
    runs = args.match_runs
    books = [
        phones.address_book(numbers, registered, args.book, args.registered, rng)
        for _ in range(2 * runs)
    ]
    names = list(sessions)
    owners = {name: await sign_in(sessions[name], nodes[name], runs) for name in names}
    own = {name: books[k * runs : (k + 1) * runs] for k, name in enumerate(names)}
    await indexer_caught_up(conn)
    first: dict[str, list[float]] = {name: [] for name in names}
    again: dict[str, list[float]] = {name: [] for name in names}
    for i in range(runs):
        for name in names if i % 2 == 0 else names[::-1]:
            book, hits = own[name][i]
            request = Request(
                "PUT",
                "/v1/contacts",
                owners[name][i].headers,
                json={"numbers": book, "region": "GB"},
            )
            spent, body = await timed(sessions[name], request)
            check_matches([body], args.book, [hits])
            first[name].append(spent)
    for i in range(runs):
        for name in names if i % 2 == 0 else names[::-1]:
            book, hits = own[name][0]
            owner = owners[name][0]
            request = Request(
                "PUT", "/v1/contacts", owner.headers, json={"numbers": book, "region": "GB"}
            )
            spent, body = await timed(sessions[name], request)
            check_matches([body], args.book, [hits])
            again[name].append(spent)
    return {
        name: {
            "first_upload": summary(first[name])
            | {"runs_ms": [round(s * 1000) for s in first[name]]},
            "same_book_again": summary(again[name])
            | {"runs_ms": [round(s * 1000) for s in again[name]]},
        }
        for name in names
    }


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"


def markdown(report: dict[str, Any]) -> str:
    new, old = "new", "old"
    lines = [
        f"{report['date']}, {report['command']}, new = {report['git']['commit']}"
        f" ({report['git']['dirty_files']} files changed), old = {report['baseline']},"
        f" load at start {report['at_start']['loadavg']}",
        "",
        f"| people search, {report['sizes']['users']:,} people | node | p50 | p95 | p99 | max |"
        " p99 / target | p99 new / old |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, key in (("HTTP, one at a time", "sequential"), ("HTTP, 8 in flight", "concurrent")):
        scenario = report["search"][key]
        ratio = scenario[new]["all"]["p99_ms"] / scenario[old]["all"]["p99_ms"]
        for name in (new, old):
            s = scenario[name]["all"]
            verdict = s["p99_ms"] / TARGET_SEARCH_MS
            lines.append(
                f"| {label} | {name} | {_ms(s['p50_ms'])} | {_ms(s['p95_ms'])} | "
                f"{_ms(s['p99_ms'])} | {_ms(s['max_ms'])} | {verdict:.2f} "
                f"{'✓' if verdict <= 1 else '✗'} | {ratio:.2f} |"
            )
    conc = report["search"]["concurrent"]
    lines += ["", "| 8 in flight | searches/s | node CPU / search | PostgreSQL CPU / search |"]
    lines.append("| --- | ---: | ---: | ---: |")
    for name in (new, old):
        c = conc[name]["cpu_ms_per_request"]
        lines.append(
            f"| {name} | {conc[name]['per_s']} | {c.get('server', 0):.1f} ms | "
            f"{c.get('postgres', 0):.1f} ms |"
        )
    seq = report["search"]["sequential"]
    lines += [
        "",
        "| query kind (one at a time) | new p50 | new p99 | old p50 | old p99 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for kind in seq[new]["by_kind"]:
        a, b = seq[new]["by_kind"][kind], seq[old]["by_kind"][kind]
        lines.append(
            f"| {kind} | {_ms(a['p50_ms'])} | {_ms(a['p99_ms'])} | "
            f"{_ms(b['p50_ms'])} | {_ms(b['p99_ms'])} |"
        )
    if report.get("matching"):
        m = report["matching"]
        lines += [
            "",
            f"| matching {report['sizes']['book']:,} numbers against"
            f" {report['sizes']['directory']:,} | node | runs | median | max |"
            " median / target | median new / old |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for label, key in (
            ("first upload", "first_upload"),
            ("same book again", "same_book_again"),
        ):
            ratio = m[new][key]["p50_ms"] / m[old][key]["p50_ms"]
            for name in (new, old):
                s = m[name][key]
                verdict = s["p50_ms"] / TARGET_MATCH_MS
                lines.append(
                    f"| {label} | {name} | {s['n']} | {_ms(s['p50_ms'])} | {_ms(s['max_ms'])} | "
                    f"{verdict:.2f} {'✓' if verdict <= 1 else '✗'} | {ratio:.2f} |"
                )
    return "\n".join(lines)


def _show(label: str, result: dict[str, Any], key: str) -> None:
    print(f"  {label}: " + json.dumps({name: r[key] for name, r in result.items()}), flush=True)


async def measure(
    args: argparse.Namespace, nodes: dict[str, ServerProcess], db_url: str, keys: Path
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    conn = await asyncpg.connect(db_url)
    secret = load_server_keys(AuthSettings(keys_dir=keys)).server_secret
    generator = PeopleGenerator(1)
    rng = random.Random(6)
    people = await seed.add_people(conn, generator, args.users, start=0, indexed=True)
    await vacuum(conn, ["users", "profiles", "search_people"])
    sessions = {
        name: aiohttp.ClientSession(
            node.url, connector=aiohttp.TCPConnector(limit=args.concurrency + 2)
        )
        for name, node in nodes.items()
    }
    try:
        searchers = await make_searchers(sessions["new"], nodes["new"], 4, generator)
        await indexer_caught_up(conn)
        await seed.add_social(
            conn,
            [s.user_id for s in searchers],
            [uid for uid, _ in people],
            listed_by=LISTED_BY,
            blocks=BLOCKS,
            rng=rng,
        )
        await vacuum(conn, ["user_contacts", "blocks"])
        mix = QueryMix([p for _, p in people])
        for session in sessions.values():
            warm = [search_request(q, searchers[0]) for q in mix.draw(200)]
            await fire(session, warm, args.concurrency, keep=False)
        out["at_search"] = quiet()
        out["search"] = {
            "sequential": await search_sequential(sessions, searchers, mix, args.requests)
        }
        _show("one at a time", out["search"]["sequential"], "all")
        database = db_url.rsplit("/", 1)[1]
        meters = {}
        for name, node in nodes.items():
            assert node.proc is not None
            meters[name] = CpuMeter(node.proc.pid, conn, database)
        out["search"]["concurrent"] = await search_concurrent(
            sessions, meters, searchers, mix, args.requests, args.concurrency
        )
        _show(f"{args.concurrency} in flight", out["search"]["concurrent"], "all")
        if args.directory:
            out["at_matching"] = quiet()
            out["matching"] = await matching(sessions, nodes, conn, secret, generator, people, args)
            _show("first uploads", out["matching"], "first_upload")
    finally:
        for session in sessions.values():
            await session.close()
        await conn.close()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--baseline", default="0f6b8b5", help="the commit to compare with")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--directory", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=1000, help="searches per node and scenario")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--match-runs", type=int, default=10)
    parser.add_argument("--book", type=int, default=5000)
    parser.add_argument("--registered", type=float, default=0.2)
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="MINUTES")
    parser.add_argument("--max-load", type=float, default=0.7)
    args = parser.parse_args()
    baseline = export(args.baseline)
    state = wait_quiet(args.wait_quiet, args.max_load) if args.wait_quiet else quiet()
    print(f"machine: load {state['loadavg']}, other runs {state['processes']}", flush=True)
    report: dict[str, Any] = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.search.ab", *sys.argv[1:]]),
        "git": git_state(),
        "baseline": baseline.name.removeprefix("parley-ab-"),
        "at_start": state,
        "sizes": {
            k: getattr(args, k)
            for k in ("users", "directory", "requests", "concurrency", "match_runs", "book")
        },
    }
    async with scratch_deployment("parley_bench_search_ab", workers=2) as (db_url, keys, env):
        nodes: dict[str, ServerProcess] = {}
        try:
            # The new node migrates the database; the old one only serves it.
            nodes["new"] = start_node(env, ROOT, "new")
            nodes["old"] = start_node(
                env | {"PARLEY_DATABASE_AUTO_MIGRATE": "false"}, baseline, "old"
            )
            report |= await measure(args, nodes, db_url, keys)
        finally:
            for node in nodes.values():
                node.stop()
    report["at_end"] = quiet()
    write_report(report, "search-ab", markdown(report))


if __name__ == "__main__":
    asyncio.run(main())
