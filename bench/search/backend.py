"""The backend alone, in this process: the search index, the route's other queries, matching.

Tortoise is opened on the benchmark's database (as the node opens it) and
the product's own objects are called: ``PostgresSearchIndex.search_people``,
``server.search.service.searcher`` (blocks, who lists the searcher, profile
interests), ``profile_cards`` and ``ContactService.replace``. For replace,
the service's two steps are wrapped with timers (the instance's ``parse``,
the worker processes' normalize, and ``store_book``, the one statement that
writes, matches and relates the book and reads the cards), so the breakdown
is of the shipped code, not a copy of it.
EXPLAIN ANALYZE runs the statements the index builds (taken from
storage.search.postgres, so they cannot drift) on a plain asyncpg connection.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from bench.search.queries import Query
from bench.search.stats import summary
from server.contacts.cards import profile_cards
from server.contacts.service import ContactService
from server.search.service import searcher as searcher_context
from storage.search import postgres as pg_search
from storage.search.base import SIMILARITY_THRESHOLD, PeopleSearch

PAGE = 20
_ROWS = re.compile(r"actual time=[0-9.]+\.\.[0-9.]+ rows=([0-9]+)")
MATCH_SQL = (
    "SELECT c.phone_hash, d.user_id FROM contacts c "
    "JOIN phone_directory d ON d.phone_hash = c.phone_hash WHERE c.owner_id = $1"
)


class NoEmitter:
    async def emit_to_users(self, event: str, data: Any, user_ids: list[str]) -> None:
        return None


async def search_index(
    queries: Sequence[Query],
    exclude: set[str],
    contacts_of: set[str],
    profile_interests: tuple[str, ...],
) -> dict[str, Any]:
    """search_people for every query, one at a time; latency per kind and overall.

    Every other query is made as by a searcher with ``profile_interests`` on
    their profile: the route passes those when the query names none.
    """
    index = pg_search.PostgresSearchIndex()
    by_kind: dict[str, list[float]] = defaultdict(list)
    hits: dict[str, list[int]] = defaultdict(list)
    for i, query in enumerate(queries):
        interests, kind = query.interests, query.kind
        if i % 2 and not interests and profile_interests:
            interests, kind = profile_interests, f"{kind}+profile"
        started = time.perf_counter()
        found = await index.search_people(
            query=query.q,
            interests=interests,
            exclude=exclude,
            contacts_of=contacts_of,
            limit=PAGE,
            offset=0,
        )
        by_kind[kind].append(time.perf_counter() - started)
        hits[kind].append(len(found))
    everything = [s for samples in by_kind.values() for s in samples]
    return {
        "all": summary(everything),
        "by_kind": {
            k: summary(v) | {"median_hits": sorted(hits[k])[len(hits[k]) // 2]}
            for k, v in sorted(by_kind.items())
        },
    }


async def _time(fn: Callable[[], Awaitable[object]], n: int) -> dict[str, float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - started)
    return summary(samples)


async def route_parts(searcher: str, page: list[str], n: int) -> dict[str, Any]:
    """The other work of GET /v1/users/search: the searcher's context and 20 cards."""
    return {
        "searcher (blocks, who lists me, profile)": await _time(
            lambda: searcher_context(searcher), n
        ),
        "cards_20": await _time(lambda: profile_cards(page), n),
    }


async def replace_stages(
    secret: bytes, books: Sequence[tuple[str, list[str]]], region: str
) -> dict[str, Any]:
    """ContactService.replace per (owner, book), split into its two steps."""
    service = ContactService(secret, NoEmitter())
    # A node's first big book is parsed in a thread while its workers start;
    # this measures the books after that.
    await service.warm_up()
    runs: list[dict[str, float]] = []
    spent: dict[str, float] = defaultdict(float)

    def timed(name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started

        return wrapper

    # The shipped steps, wrapped on this instance only.
    service.parse = timed("normalize", service.parse)  # type: ignore[method-assign]
    service.store_book = timed("store_book", service.store_book)  # type: ignore[method-assign]
    try:
        for owner, book in books:
            spent.clear()
            started = time.perf_counter()
            matches, found = await service.replace(owner, book, region)
            total = time.perf_counter() - started
            run = dict(spent)
            run["total"] = total
            run["matches"] = len(matches)
            run["stored"] = len(found.hashes)
            runs.append(run)
    finally:
        service.close()
    steps = ["total", "normalize", "store_book"]
    return {
        "runs": len(runs),
        "matches": [r["matches"] for r in runs],
        "stored": [r["stored"] for r in runs],
        "steps": {s: summary([r[s] for r in runs]) for s in steps},
    }


async def match_query(conn: asyncpg.Connection, owners: Sequence[str], n: int) -> dict[str, float]:
    """The single matching join alone, on a plain connection (prepared, like asyncpg's cache)."""
    statement = await conn.prepare(MATCH_SQL)
    samples = []
    for i in range(n):
        started = time.perf_counter()
        await statement.fetch(owners[i % len(owners)])
        samples.append(time.perf_counter() - started)
    return summary(samples)


# -- plans ---------------------------------------------------------------------


def _search_statements(
    query: Query, exclude: list[str], contacts_of: list[str]
) -> list[tuple[str, float, str, list[Any]]]:
    """(label, threshold, statement, params) the index would run for ``query``."""
    search = PeopleSearch.of(
        query=query.q,
        interests=query.interests,
        exclude=exclude,
        contacts_of=contacts_of,
        limit=PAGE,
        offset=0,
    )
    audience = [list(search.exclude), list(search.contacts_of)]
    slugs = list(search.interests)
    n = len(slugs)
    if search.query and n:
        tiers = ["all", "any", ""] if n > 1 else ["any", ""]
        return [
            (
                f"name + interests, sharing {sharing or 'any or none'}",
                SIMILARITY_THRESHOLD,
                pg_search._people_by_query(n, sharing=sharing),
                [search.query, *audience, PAGE, 0, *slugs, *([slugs] if sharing else [])],
            )
            for sharing in tiers
        ]
    if search.query:
        return [
            (
                f"name tier {t}",
                t,
                pg_search._PEOPLE_SCORING_ONE if t == 1.0 else pg_search._people_by_query(0),
                [search.query, *audience, PAGE, 0],
            )
            for t in [*pg_search.TIERS, SIMILARITY_THRESHOLD]
        ]
    out = [
        (
            "interests, sharing all",
            SIMILARITY_THRESHOLD,
            pg_search._PEOPLE_SHARING_ALL,
            [slugs, *audience, PAGE, 0],
        )
    ]
    if n > 1:
        out.append(
            (
                "interests, sharing any",
                SIMILARITY_THRESHOLD,
                pg_search._people_by_interests(n),
                [slugs, *audience, PAGE, 0, *slugs],
            )
        )
    return out


async def explain(
    conn: asyncpg.Connection, statement: str, params: Sequence[Any], threshold: float | None
) -> str:
    """The plan with actual times, in a transaction rolled back (SET LOCAL, as the index does)."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        if threshold is not None:
            await conn.execute(pg_search._threshold(threshold))
        rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + statement, *params)
        return "\n".join(r[0] for r in rows)
    finally:
        await transaction.rollback()


async def plans(
    conn: asyncpg.Connection,
    queries: dict[str, Query],
    exclude: list[str],
    contacts_of: list[str],
    *,
    owner: str | None,
) -> dict[str, str]:
    """EXPLAIN (ANALYZE, BUFFERS) of each kind of search and of the matching join."""
    out: dict[str, str] = {}
    for kind, query in queries.items():
        for label, threshold, statement, params in _search_statements(query, exclude, contacts_of):
            name = f"{kind} (q={query.q!r} interests={','.join(query.interests)}): {label}"
            plan = await explain(conn, statement, params, threshold)
            out[name] = plan
            # The index stops at the first tier that fills the page.
            returned = _ROWS.search(plan.splitlines()[0])
            if returned and int(returned.group(1)) == PAGE:
                break
    if owner is not None:
        out["match join (one owner's address book)"] = await explain(conn, MATCH_SQL, [owner], None)
    return out
