"""People search and contact matching on PostgreSQL: latency through HTTP and of the backend alone.

    .venv/bin/python -m bench.search.run                   # 100,000 people, 1,000,000 numbers
    .venv/bin/python -m bench.search.run --quick           # 10x smaller, fewer requests
    .venv/bin/python -m bench.search.run --wait-quiet 20   # first wait for load < 0.7, no tests
    .venv/bin/python -m bench.search.run --users 100000 --directory 0    # search only

Starts a real node (`python -m server.cli serve`, 2 workers) on a new
PostgreSQL database that the node migrates itself, then COPYs the data in
(bench/search/seed.py): ``--users`` people with profiles and search rows, and
later ``--directory`` registered numbers (one per user, users added without
search rows up to that count). Searchers and address-book owners sign in by
phone through the API. Measures, in order:

1. GET /v1/users/search for a mix of queries (bench/search/queries.py), one at
   a time and ``--concurrency`` in flight, ``--requests`` each after a warm-up;
2. the same kind of mix straight on PostgresSearchIndex.search_people in this
   process, and the route's other queries (blocks, who lists me, 20 cards);
3. EXPLAIN (ANALYZE, BUFFERS) of one query of each kind and of the matching join;
4. PUT /v1/contacts with ``--book`` numbers (``--registered`` of them known):
   ``--match-runs`` owners uploading their first book, then one owner
   replacing its book with the same one ``--match-runs`` times;
5. ContactService.replace in this process, step by step, and the join alone;
6. searches (``--concurrency`` in flight) while one owner keeps re-uploading.

Writes bench/results/search-<timestamp>.json, prints the markdown tables that
docs/BENCHMARKS.md shows, and drops the database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as redis_asyncio

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.search import backend, phones, seed  # noqa: E402
from bench.search.client import Account, sign_in  # noqa: E402
from bench.search.cpu import CpuMeter, Profiler  # noqa: E402
from bench.search.people import PeopleGenerator  # noqa: E402
from bench.search.queries import KINDS, Query, QueryMix  # noqa: E402
from bench.search.report import markdown  # noqa: E402
from bench.search.scenarios import (  # noqa: E402
    make_searchers,
    matching_http,
    search_during_uploads,
    search_http,
)
from config.keys import load_server_keys  # noqa: E402
from config.settings import AuthSettings, DatabaseSettings  # noqa: E402
from server.search.service import searcher as searcher_context  # noqa: E402
from storage.database import close_database, open_database  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402

PG_ADMIN = os.environ.get("PARLEY_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
# bench/auth and bench/fanout flush db 13, the tests 14 and 15.
REDIS_URL = os.environ.get("PARLEY_TEST_REDIS_URL", "redis://127.0.0.1:6379") + "/12"
LISTED_BY = 200  # people whose address book holds each searcher
BLOCKS = 5  # people each searcher blocked


def quiet() -> dict[str, Any]:
    """Load average and other test or benchmark runs on the machine right now."""
    found = {}
    for pattern in ("pytest", "bench.media", "bench.auth", "bench.fanout"):
        pgrep = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
        found[pattern] = len([p for p in pgrep.stdout.split() if int(p) != os.getpid()])
    return {"loadavg": [round(x, 2) for x in os.getloadavg()], "processes": found}


def wait_quiet(minutes: float, max_load: float) -> dict[str, Any]:
    deadline = time.monotonic() + 60 * minutes
    while True:
        state = quiet()
        if state["loadavg"][0] < max_load and not any(state["processes"].values()):
            return state
        if time.monotonic() > deadline:
            print(f"  still busy after {minutes:g} min ({state}); measuring anyway", flush=True)
            return state
        print(f"  busy ({state}); waiting 60 s", flush=True)
        time.sleep(60)


async def indexer_caught_up(conn: asyncpg.Connection, timeout: float = 120) -> None:
    """Wait until the node's indexer has applied every outbox event (sign-ups, numbers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = await conn.fetchval("SELECT COALESCE(MAX(id), 0) FROM events")
        position = await conn.fetchval("SELECT position FROM indexer_state WHERE name = 'search'")
        if (position or 0) >= last:
            return
        await asyncio.sleep(0.5)
    raise SystemExit("the node's indexer did not catch up")


async def vacuum(conn: asyncpg.Connection, tables: list[str]) -> float:
    seconds = await seed.analyze(conn, tables)
    print(f"  VACUUM ANALYZE {', '.join(tables)}: {seconds:.1f} s", flush=True)
    return seconds


def git_state() -> dict[str, Any]:
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
    )
    return {"commit": head.stdout.strip(), "dirty_files": len(dirty.stdout.splitlines())}


@contextlib.asynccontextmanager
async def scratch_deployment(
    prefix: str, *, workers: int, keep: bool = False
) -> AsyncIterator[tuple[str, Path, dict[str, str]]]:
    """A new database, a key directory and an emptied Redis db for the nodes under test.

    Yields the database URL, the key directory and the nodes' environment;
    drops the database and the keys afterwards unless ``keep``.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    db_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    keys = Path(f"/tmp/{name}-keys")
    env = {
        "PARLEY_DATABASE_URL": db_url,
        "PARLEY_DATABASE_AUTO_MIGRATE": "true",
        "PARLEY_DATABASE_POOL_MAX_SIZE": "20",
        "PARLEY_REDIS_URL": REDIS_URL,
        "PARLEY_AUTH_KEYS_DIR": str(keys),
        "PARLEY_AUTH_ACCESS_TOKEN_TTL": "3600",
        "PARLEY_SERVER_WORKERS": str(workers),
        "PARLEY_AUTH_OTP_PER_IP_PER_HOUR": "100000",
        "PARLEY_AUTH_OTP_RESEND_COOLDOWN": "0",
        "PARLEY_LOG_LEVEL": "WARNING",
    }
    redis = redis_asyncio.Redis.from_url(REDIS_URL)
    await redis.flushdb()
    await redis.aclose()
    try:
        yield db_url, keys, env
    finally:
        if not keep:
            admin = await asyncpg.connect(PG_ADMIN)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
            shutil.rmtree(keys, ignore_errors=True)


def write_report(report: dict[str, Any], stem: str, tables: str) -> None:
    """bench/results/<stem>-<timestamp>.json, then the tables and where the file went."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = ROOT / "bench" / "results" / f"{stem}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print()
    print(tables)
    print(f"\nwritten to {out}")


async def postgres_facts(conn: asyncpg.Connection) -> dict[str, Any]:
    names = ["shared_buffers", "work_mem", "effective_cache_size", "random_page_cost", "jit"]
    facts: dict[str, Any] = {n: await conn.fetchval("SELECT current_setting($1)", n) for n in names}
    facts["version"] = await conn.fetchval("SHOW server_version")
    facts["pg_trgm"] = await conn.fetchval(
        "SELECT extversion FROM pg_extension WHERE extname = 'pg_trgm'"
    )
    return facts


async def table_sizes(conn: asyncpg.Connection) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) AS size FROM pg_class "
        "WHERE relname = ANY($1::text[])",
        ["users", "profiles", "search_people", "phone_directory", "contacts", "user_contacts"],
    )
    return {r["relname"]: r["size"] for r in rows}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000, help="people in the search index")
    parser.add_argument(
        "--directory", type=int, default=1_000_000, help="registered numbers (0: skip matching)"
    )
    parser.add_argument("--quick", action="store_true", help="10x smaller, fewer requests")
    parser.add_argument("--requests", type=int, default=2000, help="searches per scenario")
    parser.add_argument("--concurrency", type=int, default=8, help="searches in flight")
    parser.add_argument("--searchers", type=int, default=4)
    parser.add_argument("--match-runs", type=int, default=10, help="uploads per scenario")
    parser.add_argument("--book", type=int, default=5000, help="numbers per address book")
    parser.add_argument("--registered", type=float, default=0.2, help="fraction of a book known")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="MINUTES")
    parser.add_argument("--max-load", type=float, default=0.7)
    parser.add_argument("--keep", action="store_true", help="keep the database (for debugging)")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the workers (sequential search, uploads)"
    )
    args = parser.parse_args()
    if args.quick:
        args.users //= 10
        args.directory //= 10
        args.requests = min(args.requests, 300)
        args.match_runs = min(args.match_runs, 3)
    if args.directory and args.directory < args.users:
        parser.error("--directory must be 0 or at least --users (one number per user)")
    return args


async def measure(
    args: argparse.Namespace, node: ServerProcess, db_url: str, keys: Path
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    conn = await asyncpg.connect(db_url)
    secret = load_server_keys(AuthSettings(keys_dir=keys)).server_secret
    generator = PeopleGenerator(1)
    rng = random.Random(6)
    results["postgres"] = await postgres_facts(conn)
    started = time.perf_counter()
    people = await seed.add_people(conn, generator, args.users, start=0, indexed=True)
    print(f"  {len(people):,} people seeded in {time.perf_counter() - started:.1f} s", flush=True)
    await vacuum(conn, ["users", "profiles", "search_people"])
    connector = aiohttp.TCPConnector(limit=args.concurrency + 2)
    async with aiohttp.ClientSession(node.url, connector=connector) as session:
        searchers = await make_searchers(session, node, args.searchers, generator)
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
        results["at_search"] = quiet()
        assert node.proc is not None
        meter = CpuMeter(node.proc.pid, conn, db_url.rsplit("/", 1)[1])
        profiler = None
        if args.profile:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            profiler = Profiler(node.proc.pid, ROOT / "bench" / "results" / f"search-{stamp}")
        results["search_http"] = await search_http(
            session, searchers, mix, args.requests, args.concurrency, meter, profiler
        )
        await open_database(DatabaseSettings(url=db_url, pool_max_size=4))
        try:
            searcher = searchers[0].user_id
            context = await searcher_context(searcher)
            exclude = {searcher} | context.blocked
            contacts_of = context.listed_by
            profile = next((s.interests for s in searchers if s.interests), ())
            warm = mix.draw(max(100, args.requests // 10))
            await backend.search_index(warm, exclude, contacts_of, profile)
            results["search_backend"] = await backend.search_index(
                mix.draw(args.requests), exclude, contacts_of, profile
            )
            print(f"  search_people alone: {results['search_backend']['all']}", flush=True)
            page = [str(uid) for uid, _ in rng.sample(people, 20)]
            results["route_parts"] = await backend.route_parts(searcher, page, 200)
            examples = {kind: mix.query(kind) for kind in KINDS}
            examples["first_name"] = Query("first_name", "Maria", ())
            results["plans"] = await backend.plans(
                conn, examples, sorted(exclude), sorted(contacts_of), owner=None
            )
            if args.directory:
                results["matching"] = await matching(
                    args,
                    node,
                    session,
                    conn,
                    secret,
                    generator,
                    people,
                    searchers,
                    mix,
                    rng,
                    meter,
                    profiler,
                )
                owner = results["matching"].pop("explain_owner")
                results["plans"].update(await backend.plans(conn, {}, [], [], owner=owner))
        finally:
            await close_database()
    if profiler is not None:
        results["profiles"] = profiler.outputs
    results["table_sizes"] = await table_sizes(conn)
    await conn.close()
    return results


async def matching(
    args: argparse.Namespace,
    node: ServerProcess,
    session: aiohttp.ClientSession,
    conn: asyncpg.Connection,
    secret: bytes,
    generator: PeopleGenerator,
    people: list[tuple[uuid.UUID, Any]],
    searchers: list[Account],
    mix: QueryMix,
    rng: random.Random,
    meter: CpuMeter,
    profiler: Profiler | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    started = time.perf_counter()
    numbers = phones.directory_numbers(args.directory)
    phones.check_valid(numbers)
    more = await seed.add_people(
        conn, generator, args.directory - len(people), start=len(people), indexed=False
    )
    users = [uid for uid, _ in people] + [uid for uid, _ in more]
    await seed.add_directory(conn, secret, zip(numbers, users, strict=True))
    print(
        f"  {len(more):,} more users, {len(numbers):,} directory rows in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    await vacuum(conn, ["users", "profiles", "phone_directory"])
    registered = set(numbers)
    books = [
        phones.address_book(numbers, registered, args.book, args.registered, rng)
        for _ in range(2 * args.match_runs)
    ]
    owners = await sign_in(session, node, args.match_runs)
    await indexer_caught_up(conn)
    out["at_matching"] = quiet()
    out["http"] = await matching_http(
        session, owners, books[: args.match_runs], args.match_runs, args.book, meter, profiler
    )
    # In process: other owners (seeded users without a book), other books.
    local = [str(uid) for uid, _ in more[-args.match_runs :]] if more else []
    local = local or [str(uid) for uid, _ in people[-args.match_runs :]]
    pairs = [(o, b) for o, (b, _) in zip(local, books[args.match_runs :], strict=True)]
    out["backend_first_upload"] = await backend.replace_stages(secret, pairs, "GB")
    out["backend_replace_same_book"] = await backend.replace_stages(
        secret, [pairs[0]] * args.match_runs, "GB"
    )
    print(f"  replace in process: {out['backend_first_upload']['steps']['total']}", flush=True)
    out["join_alone"] = await backend.match_query(conn, local, 50)
    print(f"  the join alone: {out['join_alone']}", flush=True)
    out["search_during_uploads"] = await search_during_uploads(
        session,
        searchers,
        owners[0],
        books[0][0],
        mix,
        max(200, args.requests // 4),
        args.concurrency,
    )
    # An owner with one upload behind it (local[0] has replaced its book many times).
    out["explain_owner"] = local[-1]
    return out


async def main() -> None:
    args = parse_args()
    state = wait_quiet(args.wait_quiet, args.max_load) if args.wait_quiet else quiet()
    print(f"machine: load {state['loadavg']}, other runs {state['processes']}", flush=True)
    report: dict[str, Any] = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.search.run", *sys.argv[1:]]),
        "git": git_state(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "at_start": state,
        "sizes": {
            "users": args.users,
            "directory": args.directory,
            "requests": args.requests,
            "concurrency": args.concurrency,
            "searchers": args.searchers,
            "match_runs": args.match_runs,
            "book": args.book,
            "registered": args.registered,
            "workers": args.workers,
            "listed_by": LISTED_BY,
            "blocks": BLOCKS,
        },
    }
    deployment = scratch_deployment("parley_bench_search", workers=args.workers, keep=args.keep)
    async with deployment as (db_url, keys, env):
        node = ServerProcess(env, name="bench-search").start(timeout=120)
        try:
            report |= await measure(args, node, db_url, keys)
        finally:
            node.stop()
    report["at_end"] = quiet()
    write_report(report, "search" + ("-quick" if args.quick else ""), markdown(report))


if __name__ == "__main__":
    asyncio.run(main())
