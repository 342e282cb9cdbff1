"""Two configurations of the PostgreSQL people index on the same searches, interleaved.

    .venv/bin/python -m bench.search.run --directory 0 --keep      # leaves parley_bench_search_<id>
    .venv/bin/python -m bench.search.index_ab parley_bench_search_<id> --tiers 1.0,0.6
    .venv/bin/python -m bench.search.index_ab parley_bench_search_<id> --no-walk

"base" is the index as shipped; "other" is the same with the old name tiers
(``--tiers``), without the walk (``--no-walk``) or without the "all but one"
interest tier (``--no-most``). Every search of the mix
(``bench.search.queries``, every other one with three profile interests, as
the route passes them) goes to both, alternating which goes first, and the
two pages must be equal: the configurations may differ in speed only. The
database and its node's key directory are the ones ``run.py --keep`` leaves.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.search.people import PeopleGenerator, Person
from bench.search.queries import QueryMix
from bench.search.seed import BATCH
from bench.search.stats import summary
from config.settings import DatabaseSettings
from storage.database import close_database, open_database
from storage.search import postgres as pg

PAGE = 20


def profile_interests(seed: int = 99, count: int = 3) -> tuple[str, ...]:
    generator, picked = PeopleGenerator(seed), set[str]()
    while len(picked) < count:
        picked.add(generator.interest())
    return tuple(sorted(picked))


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("database")
    parser.add_argument("--users", type=int, default=100_000, help="as seeded by run.py")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--tiers", help="the other side's name tiers, e.g. 1.0,0.6")
    parser.add_argument("--no-walk", action="store_true", help="the other side never walks")
    parser.add_argument(
        "--no-most", action="store_true", help='the other side has no "all but one" interest tier'
    )
    args = parser.parse_args()
    generator, people = PeopleGenerator(1), list[Person]()  # as run.py seeded them
    while len(people) < args.users:
        people += list(generator.people(min(BATCH, args.users - len(people))))
    mix = QueryMix(people)
    profile = profile_interests()
    url = f"postgres://postgres@127.0.0.1:5432/{args.database}"
    await open_database(DatabaseSettings(url=url, pool_max_size=4))
    base, other = pg.PostgresSearchIndex(), pg.PostgresSearchIndex()
    if args.no_walk:
        other.WALK_GAIN = float("inf")
    if args.no_most:
        other.MOST_UP_TO = 0
    shipped = pg.TIERS
    tiers = tuple(float(t) for t in args.tiers.split(",")) if args.tiers else shipped
    seconds: dict[str, list[float]] = {"base": [], "other": []}
    slowest: list[tuple[float, str, str, tuple[str, ...]]] = []
    try:
        queries = mix.draw(args.requests + 100)
        for i, query in enumerate(queries):
            interests = query.interests or (profile if i % 2 else ())
            pages: list[Any] = []
            for name in ("base", "other") if i % 2 else ("other", "base"):
                index = base if name == "base" else other
                pg.TIERS = shipped if name == "base" else tiers
                started = time.perf_counter()
                pages.append(
                    await index.search_people(
                        query=query.q,
                        interests=interests,
                        exclude=set(),
                        contacts_of=set(),
                        limit=PAGE,
                        offset=0,
                    )
                )
                elapsed = time.perf_counter() - started
                if i >= 100:  # the first hundred warm the caches of both
                    seconds[name].append(elapsed)
                    if name == "base":
                        slowest.append((elapsed * 1000, query.kind, query.q, interests))
            if pages[0] != pages[1]:
                raise SystemExit(f"pages differ for {query}: {pages}")
    finally:
        pg.TIERS = shipped
        await close_database()
    print(f"{args.requests} searches, the same page from both every time")
    other_label = f"tiers {tiers}, walk {not args.no_walk}, all but one {not args.no_most}"
    for name, label in (("base", "as shipped"), ("other", other_label)):
        print(f"  {name} ({label}): {summary(seconds[name])}")
    print(f"  walks: base {base.walks}, other {other.walks}; slowest as shipped:")
    for ms, kind, q, interests in sorted(slowest, reverse=True)[:10]:
        print(f"    {ms:6.1f} ms  {kind:16s} {q!r} {interests}")


if __name__ == "__main__":
    asyncio.run(main())
