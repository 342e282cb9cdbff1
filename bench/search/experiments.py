"""Cheaper ways to do the same work, measured on a database left by ``run.py --keep``.

    .venv/bin/python -m bench.search.experiments parley_bench_search_<id> --directory 1000000

Nothing here is product code: each experiment times the way Parley did it
at commit 6e8732c (the product's own functions, through Tortoise) against an
alternative that gives the same result, on the same data, one after the
other, and checks that the results agree. These alternatives have since
been applied (server/contacts, server/search, storage/search/postgres.py);
the "shipped" side still runs, as the ORM path SQLite keeps, so the
comparison can be repeated. bench/search/README.md has the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import phonenumbers

from bench.search import phones
from bench.search.backend import NoEmitter
from bench.search.people import FIRST_NAMES, PeopleGenerator
from bench.search.stats import summary
from config.keys import load_server_keys
from config.settings import AuthSettings, DatabaseSettings
from server.contacts.service import ContactService, phone_hash
from server.users.profiles import cards
from server.users.schemas import ProfileCard
from storage.database import close_database, open_database
from storage.models import Contact, UserContact
from storage.search import postgres as pg_search
from storage.search.similarity import normalize

PG = "postgres://postgres@127.0.0.1:5432/"
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"

# NOT IN over an unnested array is a hashed sub-plan; "<> ALL(array)" would
# compare every row with every element (5,000 x 5,000). The directory is
# joined to the unnested array (5,000 index probes): with "= ANY(array)" the
# planner estimates 5,000 rows and reads all 1,000,000 instead.
REPLACE = """
WITH gone AS (
    DELETE FROM contacts WHERE owner_id = $1 AND phone_hash NOT IN (SELECT unnest($2::text[]))
), added AS (
    INSERT INTO contacts (id, owner_id, phone_hash, created_at)
    SELECT gen_random_uuid(), $1, h, now() FROM unnest($2::text[]) AS h
    ON CONFLICT (owner_id, phone_hash) DO NOTHING
)
SELECT d.phone_hash, d.user_id FROM unnest($2::text[]) AS h
JOIN phone_directory AS d ON d.phone_hash = h
"""

RELATE = """
WITH gone AS (
    DELETE FROM user_contacts
    WHERE owner_id = $1 AND contact_id NOT IN (SELECT unnest($2::uuid[]))
)
INSERT INTO user_contacts (id, owner_id, contact_id, created_at)
SELECT gen_random_uuid(), $1, c, now() FROM unnest($2::uuid[]) AS c
ON CONFLICT (owner_id, contact_id) DO NOTHING
"""

CARDS = """
SELECT u.id::text AS user_id, u.code, u.nickname, u.first_name, u.last_name,
       u.avatar_media_id::text AS avatar_media_id, p.age, p.gender, p.interests
FROM users u LEFT JOIN profiles p ON p.user_id = u.id WHERE u.id = ANY($1::uuid[])
"""

# Tier 1.0 of a name search: every row kept scores exactly 1, so the order is
# by id alone and the score need not be computed again per row.
TOP_TIER = """
SELECT p.user_id::text AS user_id, 0 AS shared, 1.0 AS score
FROM search_people AS p
WHERE $1 <% p.names AND p.user_id NOT IN (SELECT unnest($2::uuid[]))
  AND (p.visibility = 'everyone' OR p.user_id IN (SELECT unnest($3::uuid[])))
ORDER BY p.user_id
LIMIT $4
"""

# The same, ordered by the id's text (the same order: canonical lower-case
# hex), which keeps the planner on the trigram index whatever its estimate.
TOP_TIER_BY_TEXT = TOP_TIER.replace("ORDER BY p.user_id", "ORDER BY p.user_id::text")


# Interests alone: people sharing *every* searched interest rank first (shared
# is the count), so when they fill the page, the page is theirs by id.
ALL_INTERESTS = """
SELECT p.user_id::text AS user_id, cardinality($1::text[]) AS shared, 0 AS score
FROM search_people AS p
WHERE p.interests @> $1::text[] AND p.user_id NOT IN (SELECT unnest($2::uuid[]))
  AND (p.visibility = 'everyone' OR p.user_id IN (SELECT unnest($3::uuid[])))
ORDER BY p.user_id
LIMIT $4
"""


async def timed(fn: Callable[[], Awaitable[Any]], n: int) -> tuple[dict[str, float], Any]:
    samples, result = [], None
    for _ in range(n):
        started = time.perf_counter()
        result = await fn()
        samples.append(time.perf_counter() - started)
    return summary(samples), result


def _normalize_chunk(secret: bytes, numbers: list[str]) -> int:
    return len(ContactService(secret, NoEmitter()).normalize(numbers, "GB").hashes)


def normalize_in_processes(book: list[str], secret: bytes, runs: int) -> dict[str, float]:
    """ContactService.normalize over two worker processes, half the book each (pool warm)."""
    half = len(book) // 2
    samples = []
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_normalize_chunk, [secret, secret], [book[:10], book[:10]]))
        for _ in range(runs):
            started = time.perf_counter()
            done = list(pool.map(_normalize_chunk, [secret, secret], [book[:half], book[half:]]))
            samples.append(time.perf_counter() - started)
            assert sum(done) == len(book)
    return summary(samples)


def normalize_parts(book: list[str], secret: bytes) -> dict[str, float]:
    """Microseconds per number of each step of ContactService.normalize, and of alternatives."""
    out = {}
    started = time.perf_counter()
    parsed = [phonenumbers.parse(raw, "GB") for raw in book]
    out["parse_us"] = time.perf_counter() - started
    started = time.perf_counter()
    valid = [phonenumbers.is_valid_number(n) for n in parsed]
    out["is_valid_number_us"] = time.perf_counter() - started
    started = time.perf_counter()
    possible = [phonenumbers.is_possible_number(n) for n in parsed]
    out["is_possible_number_us"] = time.perf_counter() - started
    started = time.perf_counter()
    e164 = [phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164) for n in parsed]
    out["format_e164_us"] = time.perf_counter() - started
    started = time.perf_counter()
    [phone_hash(secret, e) for e in e164]
    out["hmac_us"] = time.perf_counter() - started
    assert all(valid) and all(possible)
    return {k: round(v * 1e6 / len(book), 1) for k, v in out.items()}


async def contacts(
    conn: asyncpg.Connection, secret: bytes, owners: list[str], book: list[str], runs: int
) -> dict[str, Any]:
    service = ContactService(secret, NoEmitter())
    out: dict[str, Any] = {}
    started = time.perf_counter()
    found = service.normalize(book, "GB")
    out["normalize_ms"] = round((time.perf_counter() - started) * 1000, 1)
    out["normalize_parts_us_per_number"] = normalize_parts(book, secret)
    out["normalize_two_processes"] = normalize_in_processes(book, secret, runs)
    hashes = list(found.hashes)

    # Storing a first book: Tortoise bulk_create (as shipped) against one INSERT ... unnest.
    orm, sql_ = [], []
    for owner in owners[:runs]:
        await Contact.filter(owner_id=owner).delete()
        started = time.perf_counter()
        await service._store(owner, found.hashes)
        orm.append(time.perf_counter() - started)
        await Contact.filter(owner_id=owner).delete()
        started = time.perf_counter()
        await conn.execute(
            "INSERT INTO contacts (id, owner_id, phone_hash, created_at) "
            "SELECT gen_random_uuid(), $1, h, now() FROM unnest($2::text[]) AS h",
            uuid.UUID(owner),
            hashes,
        )
        sql_.append(time.perf_counter() - started)
    out["store_5000_orm"] = summary(orm)
    out["store_5000_unnest"] = summary(sql_)

    # The whole replace (delete, insert, match) in one statement: a first book for
    # each of the other owners, then the same book again for one of them.
    firsts, rows = [], []
    for other in owners[runs : 2 * runs]:
        started = time.perf_counter()
        rows = await conn.fetch(REPLACE, uuid.UUID(other), hashes)
        firsts.append(time.perf_counter() - started)
    owner = owners[runs]
    again, rows_again = await timed(lambda: conn.fetch(REPLACE, uuid.UUID(owner), hashes), runs)
    out["replace_statement_first"] = summary(firsts)
    out["replace_statement_same_book"] = again
    shipped = await service._rematch(owners[2 * runs - 1], found)
    assert {str(r["user_id"]) for r in rows} - {owners[2 * runs - 1]} == {
        c.user_id for c, _ in shipped
    }
    matched = sorted({r["user_id"] for r in rows_again} - {uuid.UUID(owner)})
    out["matches"] = len(matched)

    # user_contacts: the shipped diff (2 queries + bulk_create) against one statement.
    await UserContact.filter(owner_id=owner).delete()
    out["relate_statement_first"], _ = await timed(
        lambda: conn.execute(RELATE, uuid.UUID(owner), matched), 1
    )
    out["relate_statement_same"], _ = await timed(
        lambda: conn.execute(RELATE, uuid.UUID(owner), matched), runs
    )

    # Cards of the matches: Tortoise (two queries, model objects) against one join.
    ids = [str(u) for u in matched]
    out["cards_orm"], orm_cards = await timed(lambda: cards(ids), runs)

    async def raw_cards(ids: list[uuid.UUID]) -> list[ProfileCard]:
        rows = await conn.fetch(CARDS, ids)
        return [
            ProfileCard(
                **{k: r[k] for k in ("user_id", "code", "nickname", "first_name", "last_name")},
                avatar_media_id=r["avatar_media_id"],
                age=r["age"],
                gender=r["gender"] or "",
                interests=json.loads(r["interests"]) if r["interests"] else [],
            )
            for r in rows
        ]

    out["cards_join"], raw = await timed(lambda: raw_cards(matched), runs)
    assert {c.user_id: c for c in raw} == {c.user_id: c for c in orm_cards}
    # A search page: 20 cards.
    page = matched[:20]
    out["cards_orm_20"], _ = await timed(lambda: cards([str(u) for u in page]), 5 * runs)
    out["cards_join_20"], _ = await timed(lambda: raw_cards(page), 5 * runs)
    return out


async def search(conn: asyncpg.Connection, runs: int) -> dict[str, Any]:
    """Tier 1.0 of the ten most common first names: the shipped statement and TOP_TIER."""
    statement = pg_search._people_by_query(0)
    out: dict[str, Any] = {}
    for name in FIRST_NAMES[:10]:
        query = normalize(name)
        params = [query, [], [], 20, 0]
        async with conn.transaction():
            await conn.execute(pg_search._threshold(1.0))
            matches = await conn.fetchval(
                "SELECT count(*) FROM search_people WHERE $1 <% names", query
            )
            shipped, a = await timed(partial(conn.fetch, statement, *params), runs)
            lean, b = await timed(partial(conn.fetch, TOP_TIER, *params[:4]), runs)
            text, c = await timed(partial(conn.fetch, TOP_TIER_BY_TEXT, *params[:4]), runs)
        assert [r["user_id"] for r in a] == [r["user_id"] for r in b] == [r["user_id"] for r in c]
        out[name] = {
            "matches": matches,
            "shipped": shipped,
            "top_tier": lean,
            "top_tier_by_text": text,
        }
    return out


async def interests(conn: asyncpg.Connection, queries: int) -> dict[str, Any]:
    """Interest-only searches: the shipped statement against ALL_INTERESTS first."""
    generator = PeopleGenerator(9)
    shipped_s, tiered_s = [], []
    fallbacks = 0
    for _ in range(queries):
        # One to three interests, drawn with their popularity, as queries.py does.
        count = generator.rng.randint(1, 3)
        slugs = sorted({generator.interest() for _ in range(count)})
        params = [slugs, [], [], 20, 0, *slugs]
        statement = pg_search._people_by_interests(len(slugs))
        started = time.perf_counter()
        a = await conn.fetch(statement, *params)
        shipped_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        b = await conn.fetch(ALL_INTERESTS, *params[:4])
        if len(b) < 20:
            fallbacks += 1
            b = await conn.fetch(statement, *params)
        tiered_s.append(time.perf_counter() - started)
        assert [r["user_id"] for r in a] == [r["user_id"] for r in b]
    return {
        "shipped": summary(shipped_s),
        "all_interests_first": summary(tiered_s),
        "fell_back": fallbacks,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("database")
    parser.add_argument("--directory", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--book", type=int, default=5000)
    args = parser.parse_args()
    url = PG + args.database
    secret = load_server_keys(
        AuthSettings(keys_dir=Path(f"/tmp/{args.database}-keys"))
    ).server_secret
    conn = await asyncpg.connect(url)
    await open_database(DatabaseSettings(url=url, pool_max_size=4))
    report: dict[str, Any] = {}
    try:
        report["interests_only"] = await interests(conn, 200)
        print(f"  interests only: {report['interests_only']}")
        report["search_top_tier"] = await search(conn, args.runs)
        for name, r in report["search_top_tier"].items():
            shipped, lean = r["shipped"]["p50_ms"], r["top_tier"]["p50_ms"]
            text = r["top_tier_by_text"]["p50_ms"]
            print(f"  {name}: {r['matches']} at 1.0, {shipped} -> {lean} / {text} ms")
        if args.directory:
            numbers = phones.directory_numbers(args.directory)
            rng = random.Random(7)
            book, _ = phones.address_book(numbers, set(numbers), args.book, 0.2, rng)
            owners = [
                str(r["id"])
                for r in await conn.fetch(
                    "SELECT u.id FROM users u WHERE NOT EXISTS "
                    "(SELECT 1 FROM contacts c WHERE c.owner_id = u.id) ORDER BY u.id LIMIT $1",
                    2 * args.runs,
                )
            ]
            report["contacts"] = await contacts(conn, secret, owners, book, args.runs)
            print(json.dumps(report["contacts"], indent=1))
    finally:
        await close_database()
        await conn.close()
    out = RESULTS / f"search-experiments-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    asyncio.run(main())
