"""The search index contract, run against SQLite FTS5, PostgreSQL pg_trgm and OpenSearch.

The OpenSearch runs need PARLEY_OPENSEARCH_URL; without it they are deselected
at collection and the run says so in its summary (tests/conftest.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from config.settings import DatabaseSettings
from storage import database, sql
from storage.search import build_search_index
from storage.search.base import MessageDoc, PersonDoc, SearchIndex
from storage.search.opensearch import OpenSearchSearchIndex
from storage.search.postgres import PostgresSearchIndex
from storage.search.similarity import normalize, word_similarity
from storage.search.sqlite import SqliteSearchIndex
from tests.support.services import create_postgres_database, drop_postgres_database

# (database, index) pairs: each SQL index runs on its own database; OpenSearch
# needs none, so it gets the cheapest.
_BACKENDS = [("sqlite", "sqlite"), ("postgres", "postgres"), ("sqlite", "opensearch")]
_T0 = datetime(2026, 1, 1, tzinfo=UTC)


# Every contract test runs once per backend.
contract = pytest.mark.parametrize(
    ("db", "search"), _BACKENDS, indirect=True, ids=[b for _, b in _BACKENDS]
)


@pytest.fixture
async def search(
    request: pytest.FixtureRequest, db: DatabaseSettings
) -> AsyncIterator[SearchIndex]:
    """An empty search index of one backend."""
    index: SearchIndex
    if request.param == "opensearch":
        url = os.environ["PARLEY_OPENSEARCH_URL"]
        index = OpenSearchSearchIndex.from_url(url, prefix=f"parley-test-{uuid.uuid4().hex[:10]}")
    elif request.param == "sqlite":
        index = SqliteSearchIndex()
    else:
        index = PostgresSearchIndex()
    assert index.backend == request.param
    await index.clear()
    try:
        yield index
    finally:
        if isinstance(index, OpenSearchSearchIndex):
            await index.drop()
        await index.close()


def _id() -> str:
    return str(uuid.uuid4())


def person(
    name: str,
    nickname: str = "",
    interests: tuple[str, ...] = (),
    visibility: str = "everyone",
    user_id: str | None = None,
) -> PersonDoc:
    return PersonDoc(
        user_id=user_id or _id(),
        name=name,
        nickname=nickname,
        interests=interests,
        visibility=visibility,
    )


def message(conversation_id: str, seq: int, text: str, message_id: str | None = None) -> MessageDoc:
    return MessageDoc(
        message_id=message_id or _id(),
        conversation_id=conversation_id,
        seq=seq,
        sender_id=_id(),
        text=text,
        created_at=_T0 + timedelta(minutes=seq),
    )


async def people(
    index: SearchIndex,
    query: str = "",
    interests: tuple[str, ...] = (),
    *,
    exclude: frozenset[str] = frozenset(),
    contacts_of: frozenset[str] = frozenset(),
    limit: int = 20,
    offset: int = 0,
) -> list[str]:
    hits = await index.search_people(
        query=query,
        interests=interests,
        exclude=exclude,
        contacts_of=contacts_of,
        limit=limit,
        offset=offset,
    )
    return [h.user_id for h in hits]


async def messages(
    index: SearchIndex, query: str, conversations: list[str], limit: int = 20, offset: int = 0
) -> list[str]:
    hits = await index.search_messages(
        query=query, conversation_ids=conversations, limit=limit, offset=offset
    )
    return [h.message_id for h in hits]


# --- People ------------------------------------------------------------------


@contract
async def test_names_are_found_despite_typos(search: SearchIndex) -> None:
    """Typos in first name, last name, a long name and a nickname still find the person."""
    john = person("John Smith")
    alexander = person("Alexander Petrov")
    luke = person("Luke", nickname="Skywalker")
    await search.upsert_people([john, alexander, person("Maria Garcia"), luke])
    assert await people(search, "Jonh Smiht") == [john.user_id]
    assert await people(search, "Jonh") == [john.user_id]
    assert await people(search, "Smiht") == [john.user_id]
    assert await people(search, "alexandr") == [alexander.user_id]
    assert await people(search, "skywalkr") == [luke.user_id]


@contract
async def test_case_and_accents_do_not_matter(search: SearchIndex) -> None:
    """Upper case, lower case, accented or not: the same person."""
    emile = person("Émile Zoëlle")
    await search.upsert_people([emile])
    assert await people(search, "EMILE ZOELLE") == [emile.user_id]
    assert await people(search, "émile") == [emile.user_id]


@contract
async def test_an_unrelated_query_finds_nobody(search: SearchIndex) -> None:
    """A query sharing no more than a stray trigram with any name returns nothing."""
    await search.upsert_people([person("John Smith"), person("Barbara Jones", "babs")])
    assert await people(search, "Xylophone") == []
    assert await people(search, "zebra") == []
    assert await people(search, "qq") == []


@contract
async def test_query_only_ranks_by_similarity(search: SearchIndex) -> None:
    """The exact name scores 1 and comes first; weaker matches follow in score order."""
    exact = person("John Smith")
    close = person("Johnny Smithers")
    far = person("Jon Smyth")
    await search.upsert_people([far, close, exact, person("Peter Parker")])
    hits = await search.search_people(
        query="john smith", interests=[], exclude=(), contacts_of=(), limit=10, offset=0
    )
    assert [h.user_id for h in hits] == [exact.user_id, close.user_id, far.user_id]
    assert hits[0].score == 1.0
    assert all(0 < h.score <= 1 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(h.shared_interests == 0 for h in hits)


@contract
async def test_shared_interests_rank_before_similarity(search: SearchIndex) -> None:
    """With a query and interests: most shared interests first, then the more similar name."""
    two_shared = person("Jon Smyth", interests=("jazz", "hiking", "chess"))
    one_shared_exact = person("John Smith", interests=("jazz",))
    one_shared_far = person("Johnny Smithers", interests=("hiking", "cooking"))
    none_shared = person("John Smith", interests=("cooking",))
    not_matching = person("Peter Parker", interests=("jazz", "hiking"))
    await search.upsert_people(
        [none_shared, one_shared_far, not_matching, two_shared, one_shared_exact]
    )
    hits = await search.search_people(
        query="John Smith",
        interests=["jazz", "hiking"],
        exclude=(),
        contacts_of=(),
        limit=10,
        offset=0,
    )
    assert [h.user_id for h in hits] == [
        two_shared.user_id,
        one_shared_exact.user_id,
        one_shared_far.user_id,
        none_shared.user_id,
    ], "a person must match the query; shared interests rank first"
    assert [h.shared_interests for h in hits] == [2, 1, 1, 0]
    one_by_one = [
        (await people(search, "John Smith", ("jazz", "hiking"), limit=1, offset=i))[0]
        for i in range(4)
    ]
    assert one_by_one == [h.user_id for h in hits], "pages agree with the full list"


@contract
async def test_equal_people_are_ordered_by_id(search: SearchIndex) -> None:
    """Same shared interests and same similarity: ordered by user id, stable across pages."""
    twins = [person("Anna Berg", interests=("jazz",)) for _ in range(5)]
    await search.upsert_people(twins)
    expected = sorted(t.user_id for t in twins)
    assert await people(search, "anna berg", ("jazz",)) == expected
    first = await people(search, "anna berg", ("jazz",), limit=2)
    rest = await people(search, "anna berg", ("jazz",), limit=3, offset=2)
    assert first + rest == expected


@contract
async def test_pages_run_from_exact_to_weaker_matches(search: SearchIndex) -> None:
    """Paging through exact, close and weak matches gives each person once, best first."""
    exact = sorted([person("Anna Berg") for _ in range(5)], key=lambda p: p.user_id)
    close = person("Anna Bergstrom")
    weak = person("Ana Bergen")
    await search.upsert_people([weak, *exact, close, person("Olof Palme")])
    expected = [p.user_id for p in (*exact, close, weak)]
    for size in (1, 2, 3, 4):
        pages: list[str] = []
        for offset in range(0, 8, size):
            pages += await people(search, "anna berg", limit=size, offset=offset)
        assert pages == expected, size


@contract
async def test_interests_only_ranks_by_shared_count(search: SearchIndex) -> None:
    """Without a query: everyone sharing an interest, most shared first, score 0."""
    three = person("A", interests=("jazz", "hiking", "chess"))
    one = person("B", interests=("chess", "cooking"))
    two = person("C", interests=("hiking", "jazz"))
    await search.upsert_people([one, three, two, person("D", interests=("cooking",)), person("E")])
    hits = await search.search_people(
        query="",
        interests=["jazz", "hiking", "chess"],
        exclude=(),
        contacts_of=(),
        limit=10,
        offset=0,
    )
    assert [(h.user_id, h.shared_interests) for h in hits] == [
        (three.user_id, 3),
        (two.user_id, 2),
        (one.user_id, 1),
    ]
    assert all(h.score == 0 for h in hits)
    one_by_one = [
        (await people(search, "", ("jazz", "hiking", "chess"), limit=1, offset=i))[0]
        for i in range(3)
    ]
    assert one_by_one == [h.user_id for h in hits], "pages agree with the full list"


@contract
async def test_no_query_and_no_interests_find_nobody(search: SearchIndex) -> None:
    """An empty search, or one of punctuation only, returns an empty list."""
    await search.upsert_people([person("John Smith", interests=("jazz",))])
    assert await people(search) == []
    assert await people(search, "  !?*  ") == []


@contract
async def test_excluded_people_never_appear(search: SearchIndex) -> None:
    """The searcher and people they blocked are left out, by name or by interest."""
    me = person("John Smith", interests=("jazz",))
    blocked = person("John Smyth", interests=("jazz",))
    other = person("John Smithson", interests=("jazz",))
    await search.upsert_people([me, blocked, other])
    exclude = frozenset({me.user_id, blocked.user_id})
    assert await people(search, "john smith", exclude=exclude) == [other.user_id]
    assert await people(search, "", ("jazz",), exclude=exclude) == [other.user_id]
    assert await people(search, "john smith", ("jazz",), exclude=exclude) == [other.user_id]


@contract
async def test_contacts_only_people_appear_only_to_their_contacts(search: SearchIndex) -> None:
    """A "contacts" person is found only when they have the searcher in their address book."""
    shy = person("Greta Lind", interests=("opera",), visibility="contacts")
    open_ = person("Greta Lindqvist", interests=("opera",))
    await search.upsert_people([shy, open_])
    assert await people(search, "greta lind") == [open_.user_id]
    assert await people(search, "", ("opera",)) == [open_.user_id]
    stranger = frozenset({_id()})
    assert await people(search, "greta lind", contacts_of=stranger) == [open_.user_id]
    contact = frozenset({shy.user_id})
    assert await people(search, "greta lind", contacts_of=contact) == [shy.user_id, open_.user_id]
    assert set(await people(search, "", ("opera",), contacts_of=contact)) == {
        shy.user_id,
        open_.user_id,
    }


@contract
async def test_upsert_replaces_the_person(search: SearchIndex) -> None:
    """A renamed person is found by the new name only; interests and visibility follow."""
    old = person("Karl Ramsey", interests=("chess",))
    await search.upsert_people([old])
    renamed = person("Olga Nilsson", interests=("sailing",), user_id=old.user_id)
    await search.upsert_people([renamed])
    await search.upsert_people([renamed])
    assert await people(search, "Karl Ramsey") == []
    assert await people(search, "", ("chess",)) == []
    assert await people(search, "Olga Nilsson") == [old.user_id]
    assert await people(search, "", ("sailing",)) == [old.user_id]
    hidden = person("Olga Nilsson", visibility="contacts", user_id=old.user_id)
    await search.upsert_people([hidden])
    assert await people(search, "Olga Nilsson") == []


@contract
async def test_the_last_of_duplicate_docs_wins(search: SearchIndex) -> None:
    """Two versions of one person in one batch: the later one is indexed, once."""
    user_id = _id()
    await search.upsert_people(
        [person("First Version", user_id=user_id), person("Second Version", user_id=user_id)]
    )
    assert await people(search, "Second Version") == [user_id]
    assert await people(search, "First") == []


@contract
async def test_deleted_people_are_gone(search: SearchIndex) -> None:
    """A deleted person is found neither by name nor by interest; unknown ids are fine."""
    gone = person("Hanna Sjoberg", interests=("jazz",))
    kept = person("Hanna Sjoborg", interests=("jazz",))
    await search.upsert_people([gone, kept])
    await search.delete_people([gone.user_id, _id()])
    await search.delete_people([])
    assert await people(search, "hanna sjoberg") == [kept.user_id]
    assert await people(search, "", ("jazz",)) == [kept.user_id]


# --- Messages ----------------------------------------------------------------


@contract
async def test_messages_are_found_only_in_the_given_conversations(search: SearchIndex) -> None:
    """Other conversations' messages never appear; no conversation means no result."""
    mine, theirs = _id(), _id()
    here = message(mine, 1, "Let's meet at the central station at noon")
    there = message(theirs, 1, "Meet me at the central station")
    await search.upsert_messages([here, there])
    assert await messages(search, "central station", [mine]) == [here.message_id]
    assert set(await messages(search, "central station", [mine, theirs])) == {
        here.message_id,
        there.message_id,
    }
    assert await messages(search, "central station", []) == []
    assert await messages(search, "central station", [_id()]) == []


@contract
async def test_one_typo_in_a_word_still_matches(search: SearchIndex) -> None:
    """A swapped, dropped, added or wrong letter in a word of five or more letters matches."""
    conv = _id()
    found = message(conv, 1, "The Station is closed for repairs")
    await search.upsert_messages([found, message(conv, 2, "Nothing to see here")])
    for query in ("statoin", "staton", "stattion", "stetion", "repiars"):
        assert await messages(search, query, [conv]) == [found.message_id], query


@contract
async def test_unrelated_message_query_finds_nothing(search: SearchIndex) -> None:
    """A word unlike any in the conversation finds nothing."""
    conv = _id()
    await search.upsert_messages([message(conv, 1, "See you at the station tomorrow")])
    assert await messages(search, "xylophone", [conv]) == []
    assert await messages(search, "station pizza", [conv]) == [], "every word must match"


@contract
async def test_messages_rank_by_relevance_then_newest(search: SearchIndex) -> None:
    """Exact words beat a typo match; equally relevant messages come newest first."""
    conv = _id()
    old_exact = message(conv, 1, "dinner at the harbour")
    typo = message(conv, 2, "dinner at the harbor")
    new_exact = message(conv, 3, "harbour dinner tonight")
    await search.upsert_messages([old_exact, typo, new_exact])
    hits = await search.search_messages(
        query="harbour dinner", conversation_ids=[conv], limit=10, offset=0
    )
    assert [h.message_id for h in hits] == [
        new_exact.message_id,
        old_exact.message_id,
        typo.message_id,
    ]
    assert [h.seq for h in hits] == [3, 1, 2]
    assert all(h.conversation_id == conv for h in hits)
    assert hits[0].score == 1.0 and 0 < hits[2].score < hits[1].score <= 1
    first = await messages(search, "harbour dinner", [conv], limit=2)
    rest = await messages(search, "harbour dinner", [conv], limit=2, offset=2)
    assert first + rest == [h.message_id for h in hits], "pages agree with the full list"


@contract
async def test_message_pages_cover_everything_once(search: SearchIndex) -> None:
    """Paging through 25 equal matches yields each once, newest first."""
    conv = _id()
    docs = [message(conv, seq, f"weekly report number {seq}") for seq in range(1, 26)]
    await search.upsert_messages(docs)
    seen: list[str] = []
    for offset in (0, 10, 20):
        seen += await messages(search, "weekly report", [conv], limit=10, offset=offset)
    assert seen == [d.message_id for d in reversed(docs)]
    assert await messages(search, "weekly report", [conv], limit=10, offset=30) == []


@contract
async def test_edited_and_deleted_messages(search: SearchIndex) -> None:
    """An edit is found by its new words only; a deleted message is gone."""
    conv = _id()
    edited = message(conv, 1, "the password is swordfish")
    deleted = message(conv, 2, "burn after reading: swordfish")
    await search.upsert_messages([edited, deleted])
    await search.upsert_messages([message(conv, 1, "never mind", message_id=edited.message_id)])
    await search.delete_messages([deleted.message_id, _id()])
    await search.delete_messages([])
    assert await messages(search, "swordfish", [conv]) == []
    assert await messages(search, "never mind", [conv]) == [edited.message_id]


# --- Both ----------------------------------------------------------------------


@contract
async def test_clear_empties_both_indexes(search: SearchIndex) -> None:
    """After clear() nothing is found, and the index takes new documents."""
    conv = _id()
    await search.upsert_people([person("John Smith", interests=("jazz",))])
    await search.upsert_messages([message(conv, 1, "hello world")])
    await search.clear()
    assert await people(search, "john smith") == []
    assert await people(search, "", ("jazz",)) == []
    assert await messages(search, "hello", [conv]) == []
    again = person("John Smith")
    await search.upsert_people([again])
    assert await people(search, "john smith") == [again.user_id]


@contract
@pytest.mark.parametrize(("limit", "offset"), [(0, 0), (101, 0), (10, -1), (10, 1001)])
async def test_limit_and_offset_are_bounded(search: SearchIndex, limit: int, offset: int) -> None:
    """limit outside 1..100 or offset outside 0..1000 is a ValueError, for both searches."""
    with pytest.raises(ValueError):
        await people(search, "john", limit=limit, offset=offset)
    with pytest.raises(ValueError):
        await messages(search, "john", [_id()], limit=limit, offset=offset)


@contract
async def test_the_widest_page_is_allowed(search: SearchIndex) -> None:
    """limit 100 at offset 1000 is accepted (and empty here)."""
    assert await people(search, "john", limit=100, offset=1000) == []
    assert await messages(search, "john", [_id()], limit=100, offset=1000) == []


@contract
async def test_a_huge_query_uses_its_first_200_characters(search: SearchIndex) -> None:
    """A 10,000-character query is cut, not refused, and still finds what it starts with."""
    conv = _id()
    john = person("John Smith")
    note = message(conv, 1, "John Smith called")
    await search.upsert_people([john])
    await search.upsert_messages([note])
    huge = "John Smith" + " " * 190 + "x" * 9800
    assert len(huge) == 10_000
    assert await people(search, huge) == [john.user_id]
    assert await messages(search, huge, [conv]) == [note.message_id]
    assert await people(search, "q" * 10_000) == []


@contract
@pytest.mark.parametrize(
    "query",
    [
        '"',
        "'",
        "john'; DROP TABLE search_people; --",
        'NEAR("john" "smith")',
        "NEAR(",
        "john*",
        "-john",
        "john OR smith",
        "john AND NOT smith",
        "smith^",
        "{john}",
        "%_\\",
        "name:john",
        "\x00john",
        "(((",
    ],
)
async def test_hostile_queries_are_plain_text(search: SearchIndex, query: str) -> None:
    """Quotes, FTS5 and Lucene syntax and SQL are searched as text, never interpreted."""
    conv = _id()
    john = person('John "NEAR(" Smith', nickname="--")
    note = message(conv, 1, 'john said "NEAR(" and -- then * OR')
    await search.upsert_people([john])
    await search.upsert_messages([note])
    assert (await people(search, query)) in ([], [john.user_id])
    assert (await messages(search, query, [conv])) in ([], [note.message_id])
    assert await people(search, "john smith") == [john.user_id], "the index is intact"
    assert await messages(search, "john said", [conv]) == [note.message_id]


@contract
async def test_ids_must_be_uuids(search: SearchIndex) -> None:
    """A document or a filter with a malformed id is a ValueError, not a database error."""
    with pytest.raises(ValueError):
        await search.upsert_people([person("John", user_id="not-a-uuid")])
    with pytest.raises(ValueError):
        await messages(search, "hello", ["1; DROP TABLE x"])
    with pytest.raises(ValueError):
        await search.upsert_people([person("John", visibility="nobody")])


@contract
async def test_ping(search: SearchIndex) -> None:
    """A reachable index answers ping."""
    await search.ping()


# --- Not per backend -------------------------------------------------------------


async def test_build_search_index_picks_the_backend() -> None:
    """OpenSearch when a URL is set, else the SQL backend of the database in use."""
    assert isinstance(build_search_index(True, None), SqliteSearchIndex)
    assert isinstance(build_search_index(False, None), PostgresSearchIndex)
    opensearch = build_search_index(True, "http://127.0.0.1:9")
    try:
        assert isinstance(opensearch, OpenSearchSearchIndex)
    finally:
        await opensearch.close()


@pytest.mark.parametrize("db", ["postgres"], indirect=True)
async def test_the_python_scorer_agrees_with_pg_trgm(db: DatabaseSettings) -> None:
    """The port used by SQLite and OpenSearch gives pg_trgm's word_similarity, digit for digit."""
    texts = [
        "john smith",
        "jonh smiht",
        "jonh",
        "alexandr",
        "alexander petrov",
        "a",
        "jo",
        "the the the",
        "ice cream",
        "icecream",
        "zoelle",
        "жанна",
        "mississippi",
        "xyz",
        "",
    ]
    pairs = [(normalize(a), normalize(b)) for a in texts for b in texts]
    rows = await sql.fetch(
        "SELECT a, b, round(word_similarity(a, b)::numeric, 6) AS ws "
        "FROM unnest(?::text[], ?::text[]) AS t(a, b)",
        [[a for a, _ in pairs], [b for _, b in pairs]],
    )
    for row in rows:
        assert round(word_similarity(row["a"], row["b"]), 6) == float(row["ws"]), row


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_migrations_build_a_fresh_database(backend: str, tmp_path: Path) -> None:
    """apply_migrations on an empty database creates the index; the node then starts."""
    url = (
        f"sqlite://{tmp_path / 'fresh.sqlite3'}"
        if backend == "sqlite"
        else await create_postgres_database()
    )
    settings = DatabaseSettings(url=url)
    try:
        await database.apply_migrations(settings)
        await database.apply_migrations(settings)  # again: nothing to do
        await database.open_database(settings)  # refuses a schema behind the code
        try:
            assert await database.pending_migrations(settings) == []
            index = build_search_index(settings.is_sqlite, None)
            await index.ping()
            doc = person("Fresh Start")
            await index.upsert_people([doc])
            assert await people(index, "fresh start") == [doc.user_id]
        finally:
            await database.close_database()
    finally:
        if backend == "postgres":
            await drop_postgres_database(url)
