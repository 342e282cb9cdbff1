"""PostgreSQL's search shortcuts return exactly the ranking the contract defines.

The PostgreSQL index answers most people searches from a narrower query first
(names scoring 1.0, then 0.6, 0.5 and 0.4; people sharing all the interests, then any)
and falls back to the full ranking only when that does not fill the page.
Here a crowd with many equal names and interests is searched page by page,
and every page is compared with ``base.rank_people`` (the reference the
SQLite backend ranks with) applied to everyone.
"""

from __future__ import annotations

import random
import struct
import uuid
from collections.abc import AsyncIterator

import pytest

from config.settings import DatabaseSettings
from storage import sql
from storage.search.base import (
    PeopleSearch,
    PersonCandidate,
    PersonDoc,
    PersonHit,
    prepare_people,
    rank_people,
)
from storage.search.postgres import TIERS, PostgresSearchIndex

FIRST = ["Maria", "Mario", "Marian", "John", "Jon", "Johanna", "Ana", "Anna", "Li", "Zoë"]
LAST = ["Garcia", "Garcias", "Smith", "Smyth", "Nguyen", "Ng", "Lopez", "Brown", "Kim", "Ito"]
INTERESTS = ["chess", "hiking", "jazz", "poetry", "running", "skiing"]
CROWD = 1500


def crowd(rng: random.Random) -> list[PersonDoc]:
    people = []
    for _ in range(CROWD):
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        nickname = rng.choice(["", "", f"{rng.choice(FIRST)}{rng.randint(1, 99)}", "mariachi"])
        interests = tuple(rng.sample(INTERESTS, rng.randint(0, 4)))
        visibility = "contacts" if rng.random() < 0.1 else "everyone"
        people.append(PersonDoc(str(uuid.uuid4()), name, nickname, interests, visibility))
    return people


def expected(
    docs: list[PersonDoc], search: PeopleSearch, excluded: set[str], contacts: set[str]
) -> list[PersonHit]:
    """Everyone the audience allows, ranked by the contract's reference function."""
    wanted = set(search.interests)
    allowed = [
        p
        for p in prepare_people(docs)
        if p.user_id not in excluded and (p.visibility == "everyone" or p.user_id in contacts)
    ]
    if not search.query:
        sharing = sorted(
            ((len(wanted & set(p.interests)), p.user_id) for p in allowed),
            key=lambda s: (-s[0], s[1]),
        )
        page = [s for s in sharing if s[0] > 0][search.offset : search.offset + search.limit]
        return [PersonHit(user_id=u, shared_interests=n, score=0.0) for n, u in page]
    candidates = [
        PersonCandidate(p.user_id, p.name, p.nickname, len(wanted & set(p.interests)))
        for p in allowed
    ]
    return rank_people(search, candidates)


@pytest.fixture
async def filled(
    db: DatabaseSettings,
) -> AsyncIterator[tuple[PostgresSearchIndex, list[PersonDoc]]]:
    index = PostgresSearchIndex()
    await index.clear()
    docs = crowd(random.Random(6))
    await index.upsert_people(docs)
    try:
        yield index, docs
    finally:
        await index.clear()


QUERIES = [
    "maria",  # hundreds score 1.0: the first tier fills every page
    "mari",
    "john smith",  # few at 1.0, many at 0.5 (one name of two)
    "jonh smiht",
    "garcia",
    "zoe",
    "li ito",
    "mariachi",
    "anna lopez",
    "xyzzy",
]
INTEREST_SETS = [("jazz",), ("chess", "poetry"), ("hiking", "running", "skiing"), tuple(INTERESTS)]


@pytest.mark.parametrize("db", ["postgres"], indirect=True)
async def test_every_page_equals_the_reference_ranking(
    filled: tuple[PostgresSearchIndex, list[PersonDoc]],
) -> None:
    """Names, interests and both, pages 1-3, with exclusions and contacts: same as the reference."""
    await compare_every_page(*filled)


@pytest.mark.parametrize("db", ["postgres"], indirect=True)
async def test_every_page_equals_the_reference_ranking_when_walking(
    filled: tuple[PostgresSearchIndex, list[PersonDoc]],
) -> None:
    """The same with a walk over ids taken wherever the common name words suggest one."""
    index, docs = filled
    await sql.connection().execute_script("ANALYZE search_people")
    index.WALK_GAIN = 0.0  # walk whenever a level is predicted, however dear
    await compare_every_page(index, docs)
    assert index.walks >= 10  # "maria", "mari", "john smith", "garcia"... were walked


async def compare_every_page(index: PostgresSearchIndex, docs: list[PersonDoc]) -> None:
    rng = random.Random(7)
    excluded = {d.user_id for d in rng.sample(docs, 40)}
    contacts = {d.user_id for d in rng.sample(docs, 300)}
    cases = [(q, ()) for q in QUERIES] + [("", i) for i in INTEREST_SETS]
    cases += [(q, i) for q in QUERIES[:6] for i in INTEREST_SETS]
    checked = 0
    for query, interests in cases:
        for offset in (0, 20, 40):
            search = PeopleSearch.of(
                query=query,
                interests=interests,
                exclude=excluded,
                contacts_of=contacts,
                limit=20,
                offset=offset,
            )
            got = await index.search_people(
                query=query,
                interests=interests,
                exclude=excluded,
                contacts_of=contacts,
                limit=20,
                offset=offset,
            )
            want = expected(docs, search, excluded, contacts)
            assert got == want, f"q={query!r} interests={interests} offset={offset}"
            checked += len(want)
    assert checked > 1000  # most pages are full


def test_no_similarity_rounds_onto_a_tier_threshold_from_below() -> None:
    """A tier keeps the people whose float4 similarity is at least its threshold;
    the ranking rounds scores to four places. No similarity that a tier leaves
    out may round to the score of one it keeps: every ratio a/b a similarity can
    be (b < 600) below a threshold rounds below it, and one equal to it passes."""
    for threshold in TIERS:
        floor = round(threshold - 0.00005, 6)
        for b in range(1, 600):
            for a in range(int(floor * b), int(threshold * b) + 2):
                value = struct.unpack("f", struct.pack("f", a / b))[0]  # float4, as pg_trgm
                kept = value >= threshold
                assert kept or round(a / b, 4) < threshold, (threshold, a, b)
                if a * 10 == round(threshold * 10) * b:  # exactly the threshold
                    assert kept, (threshold, a, b)
