"""Search on PostgreSQL with pg_trgm, in the application's database.

Tables (migration 0003): ``search_people`` with a GIN trigram index on
``names`` (normalized name and nickname, a generated column) and a GIN index
on the interests array; ``search_messages`` with a GIN trigram index on the
normalized body, a GIN index on its words (``to_tsvector('simple', body)``)
and a btree on (conversation_id, seq).

Fuzzy matching uses the ``<%`` operator (``word_similarity >= threshold``),
which the GIN trigram indexes serve; the threshold is pg_trgm's
``word_similarity_threshold`` set with SET LOCAL, so each search runs in a
short transaction of its own (pooled connections keep no session state).
People are scored in SQL exactly as base.rank_people scores them in Python,
so they rank as on the other backends. A message query word is compared with
the whole body here (one word_similarity call) and with each body word in
Python; the two differ only when a word matches across two body words
("icecream" in "ice cream"), never on one-word typos.

Searches that could match thousands of rows first try shortcuts that return
exactly the same page (see TIERS and _MESSAGES_EXACT).
"""

from __future__ import annotations

import itertools
import json
import time
from collections import defaultdict
from collections.abc import Collection, Sequence
from decimal import Decimal
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from config.errors import UnavailableError
from storage import sql
from storage.search.base import (
    SIMILARITY_THRESHOLD,
    MessageDoc,
    MessageHit,
    MessageSearch,
    PeopleSearch,
    PersonDoc,
    PersonHit,
    canonical_ids,
    prepare_messages,
    prepare_people,
)
from storage.search.similarity import trigram_list, trigrams, word_similarity_of

# Statements below with $n placeholders go straight to execute_query_dict;
# those with ? go through storage.sql, which numbers them.

# Rows per INSERT: a JSON parameter of 500 messages stays around 2 MB.
BATCH = 500


def _threshold(value: float) -> str:
    return f"SET LOCAL pg_trgm.word_similarity_threshold = {float(value)}"


# Planning a name statement costs about a millisecond (the selectivity of
# "<%" is estimated by running word_similarity over the column's statistics),
# often more than running a tier that finds nothing. Statements whose only
# possible index is the trigram one are therefore run on generic plans, made
# once per pooled connection.
_GENERIC_PLANS = "SET LOCAL plan_cache_mode = force_generic_plan"


_UPSERT_PEOPLE = """
INSERT INTO search_people (user_id, name, nickname, interests, visibility)
SELECT (d->>'user_id')::uuid, d->>'name', d->>'nickname',
       ARRAY(SELECT jsonb_array_elements_text(d->'interests')), d->>'visibility'
FROM jsonb_array_elements(?::text::jsonb) AS d
ON CONFLICT (user_id) DO UPDATE SET
    name = excluded.name, nickname = excluded.nickname,
    interests = excluded.interests, visibility = excluded.visibility
"""

_UPSERT_MESSAGES = """
INSERT INTO search_messages (message_id, conversation_id, seq, sender_id, body, created_at)
SELECT (d->>'message_id')::uuid, (d->>'conversation_id')::uuid, (d->>'seq')::bigint,
       (d->>'sender_id')::uuid, d->>'body', (d->>'created_at')::timestamptz
FROM jsonb_array_elements(?::text::jsonb) AS d
ON CONFLICT (message_id) DO UPDATE SET
    conversation_id = excluded.conversation_id, seq = excluded.seq,
    sender_id = excluded.sender_id, body = excluded.body, created_at = excluded.created_at
"""

# Never the excluded; "contacts" people only for their contacts. The id lists
# are unnested into hashed sub-plans: a row costs one lookup however long they are.
_AUDIENCE = """p.user_id NOT IN (SELECT unnest($2::uuid[]))
      AND (p.visibility = 'everyone' OR p.user_id IN (SELECT unnest($3::uuid[])))"""


def _shared(first: int, count: int) -> str:
    """Interests shared with the searcher: one parameter per searched interest
    (a sum of = ANY is several times cheaper per row than unnesting the array)."""
    if not count:
        return "0"
    return " + ".join(f"(${n} = ANY(p.interests))::int" for n in range(first, first + count))


def _people_by_query(interests: int, *, sharing: str = "") -> str:
    """$1 query, $2 exclude, $3 contacts_of, $4 limit, $5 offset, then the interests
    and, with ``sharing``, their array: only people sharing "all" of them, all but
    one at least ("most"), or "any".

    The score mirrors base.rank_people: round(float4::numeric, 4). The cheap
    conditions come first: PostgreSQL checks a row's conditions in the order
    written when it has no reason to prefer another, and ``<%`` costs
    microseconds a row (a common first name has thousands of candidates).
    """
    array = f"${6 + interests}::text[]"
    # "most": all but one of them, whichever (each containment can use the index).
    most = " OR ".join(
        f"p.interests @> array_remove({array}, ${n})" for n in range(6, 6 + interests)
    )
    among = {
        "": "",
        "all": f"p.interests @> {array} AND",
        "most": f"({most}) AND",
        "any": f"p.interests && {array} AND",
    }
    return f"""
SELECT user_id::text AS user_id, shared, score FROM (
    SELECT p.user_id, {_shared(6, interests)} AS shared,
           round(word_similarity($1, p.names)::numeric, 4) AS score
    FROM search_people AS p
    WHERE {among[sharing]} {_AUDIENCE} AND $1 <% p.names
) AS s
ORDER BY shared DESC, score DESC, user_id
LIMIT $4 OFFSET $5
"""  # noqa: S608 (only placeholders are interpolated)


def _people_by_interests(interests: int) -> str:
    """$1 interests, $2 exclude, $3 contacts_of, $4 limit, $5 offset, then each interest."""
    return f"""
SELECT user_id::text AS user_id, shared, 0 AS score FROM (
    SELECT p.user_id, {_shared(6, interests)} AS shared
    FROM search_people AS p
    WHERE p.interests && $1::text[] AND {_AUDIENCE}
) AS s
ORDER BY shared DESC, user_id
LIMIT $4 OFFSET $5
"""  # noqa: S608 (only placeholders are interpolated)


# People sharing every one of $1 ($2 exclude, $3 contacts_of, $4 limit, $5
# offset): they all share cardinality($1), the most anyone can, so they come
# first, by id. Containment costs about 1 µs a row, so the planner may walk
# the primary key and stop at the page when they are many.
_PEOPLE_SHARING_ALL = f"""
SELECT p.user_id::text AS user_id, cardinality($1::text[]) AS shared, 0 AS score
FROM search_people AS p
WHERE p.interests @> $1::text[] AND {_AUDIENCE}
ORDER BY p.user_id
LIMIT $4 OFFSET $5
"""  # noqa: S608 (constant text)

# A name tier at threshold 1.0 ($1 query, then as above): every row kept
# scores exactly 1 (round(1::float4, 4)), so it is not scored again and the
# order is by id alone. By the id's text, in byte order, which is the uuid
# order: a uuid order would let the planner walk the primary key, re-checking
# the trigrams of every row on the way, which is slow when few names match.
_PEOPLE_SCORING_ONE = f"""
SELECT p.user_id::text AS user_id, 0 AS shared, 1.0 AS score
FROM search_people AS p
WHERE {_AUDIENCE} AND $1 <% p.names
ORDER BY p.user_id::text COLLATE "C"
LIMIT $4 OFFSET $5
"""  # noqa: S608 (constant text)


# Shortcuts that return exactly what the full search would, scoring far fewer
# rows. A common first name or a prefix ("maria", "ma") matches thousands of
# people at 0.3; ranking them all is what makes a search slow.
#
# - By score alone: look first among the people scoring at least 1.0, then
#   0.6, 0.5 and 0.4. When a tier fills the page, every person outside it scores
#   lower than the page's last. Rounding to four places cannot make one tie
#   across a threshold: a similarity is a ratio a/b of trigram counts with b
#   under 600 (a query of 200 characters, a name of 266), so one that is not
#   exactly a threshold p/10 is more than 1/6000 away from it, and one that is
#   passes it in float4 (tests/integration/test_search_tiers.py checks both).
#   The lower tiers are the ones full names fill: "federico garcia" has 18
#   people at 0.6 or more, 428 at 0.5 and 3,946 at 0.3 (everyone called
#   Federico or Garcia), "maria menloza" 15, 36 and 4,690; a failed tier costs
#   a few milliseconds, a tier of thousands tens of them.
# - With interests: people sharing all of them (found with the GIN index on the
#   array) rank before everyone else, and people sharing at least one before
#   those sharing none; when a tier fills the page, that is the page.
TIERS: tuple[float, ...] = (1.0, 0.6, 0.5, 0.4)


# A name thousands of people share ("maria", or "mar", which starts the
# names of 8 % of them) fills its page from a tier of thousands, each scored
# and sorted to find the twenty first by id among equal scores. Those twenty
# are found sooner by walking the ids in order: the first `need` people
# scoring at least t, by id (``_PEOPLE_WALK``, visiting at most $5 rows).
# With s the lowest score among them, the page is the best `need` of them and
# of everyone scoring more than s (an ordinary tier at s + 0.00004: few
# people, when s is the score thousands share): anyone else scores s or less
# and, at s, has a higher id than all walked. Exact whatever t is, provided no
# one below t rounds to s (checked: s > t + 0.0001). ANALYZE's most common
# name words (migration 0006) predict when a walk is cheaper than the tiers.
_PEOPLE_WALK = f"""
SELECT user_id::text AS user_id, 0 AS shared, score FROM (
    SELECT p.user_id, round(word_similarity($1, p.names)::numeric, 4) AS score
    FROM (SELECT user_id, names, visibility FROM search_people ORDER BY user_id LIMIT $5) AS p
    WHERE {_AUDIENCE} AND $1 <% p.names
    ORDER BY p.user_id
    LIMIT $4
) AS s
"""  # noqa: S608 (constant text)
# The walk must take the primary key in order, whatever a generic plan guesses.
_WALK_PLAN = "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off"
_TIER_PLAN = "SET LOCAL enable_seqscan = on; SET LOCAL enable_bitmapscan = on"

_NAME_WORDS = """
SELECT most_common_elems::text::text[] AS words, most_common_elem_freqs AS freqs,
       (SELECT reltuples FROM pg_class WHERE oid = 'search_people'::regclass) AS people
FROM pg_stats_ext_exprs WHERE statistics_name = 'search_people_words'
"""


def at_least(expected: list[tuple[float, float]], threshold: float) -> float:
    return sum(people for similarity, people in expected if similarity >= threshold)


class NameWords:
    """The commonest words of people's names and how many people carry each.

    From ANALYZE (``pg_stats_ext_exprs``, up to 1,000 words), re-read at most
    every ``refresh`` seconds. Only ever used to choose how to search, never
    what to return.
    """

    def __init__(self, refresh: float = 300.0) -> None:
        self.refresh = refresh
        self.people = 0.0
        # By their first two letters: (trigrams, people carrying the word).
        self._by_start: dict[str, list[tuple[list[str], float]]] = {}
        self._read_at = float("-inf")

    async def update(self, connection: Any) -> None:
        if time.monotonic() - self._read_at < self.refresh:
            return
        self._read_at = time.monotonic()
        row = await connection.fetchrow(_NAME_WORDS)
        by_start: dict[str, list[tuple[list[str], float]]] = defaultdict(list)
        people = float(row["people"]) if row is not None and row["people"] else 0.0
        if row is not None and row["words"] is not None:
            for word, freq in zip(row["words"], row["freqs"], strict=False):
                if word:
                    by_start[word[:2]].append((trigram_list(word), float(freq) * people))
        self._by_start, self.people = dict(by_start), people

    def scores(self, query: str) -> list[tuple[float, float]]:
        """(similarity, people) for the common words like the query's, best first:
        how many people each score is expected to hold."""
        needle = trigrams(query)
        found: dict[float, float] = defaultdict(float)
        for word in set(query.split()):
            for common, people in self._by_start.get(word[:2], ()):
                similarity = word_similarity_of(needle, common)
                if similarity >= SIMILARITY_THRESHOLD:
                    found[similarity] += people
        return sorted(found.items(), reverse=True)

    def walk_threshold(self, query: str, need: int, gain: float) -> float | None:
        """The similarity to walk from, when walking should cost ``gain`` times
        less than the tiers; None to use the tiers."""
        if self.people <= 0:
            return None
        expected = self.scores(query)
        cumulative = list(itertools.accumulate(people for _, people in expected))
        reached = next((i for i, n in enumerate(cumulative) if n >= need), None)
        if reached is None:
            return None
        (level, people), total = expected[reached], cumulative[reached]
        # The walk visits need / density rows, then the index finds those above.
        walk = need * self.people / total + (total - people)
        tiers = (at_least(expected, t) for t in (*TIERS, SIMILARITY_THRESHOLD))
        tier = next(n for n in tiers if n >= need)
        if walk * gain >= tier:
            return None
        # Just below the level, never below the contract's threshold.
        return max(level - 0.0002, SIMILARITY_THRESHOLD)


# Messages holding every query word as a word score exactly 1 and rank first,
# newest first; the word index finds them without comparing trigrams. When
# they fill the page, that is the page. (Bodies are normalized, so the
# 'simple' parser's tokens are exactly their words.)
_MESSAGES_EXACT = """
SELECT message_id::text AS message_id, conversation_id::text AS conversation_id, seq,
       1.0 AS score
FROM search_messages
WHERE conversation_id = ANY($1::uuid[])
  AND to_tsvector('simple', body) @@ plainto_tsquery('simple', $2)
ORDER BY created_at DESC, seq DESC, message_id
LIMIT $3
"""


def _messages_sql(words: int) -> str:
    """$1 conversations, $2.. the words, then limit and offset."""
    params = [f"${n}" for n in range(2, words + 2)]
    matches = " AND ".join(f"{p} <% body" for p in params)
    relevance = " + ".join(f"word_similarity({p}, body)::numeric" for p in params)
    # Only placeholders and a count are interpolated; the words are parameters.
    return f"""
SELECT message_id::text AS message_id, conversation_id::text AS conversation_id, seq, score
FROM (
    SELECT message_id, conversation_id, seq, created_at,
           round(({relevance}) / {words}, 4) AS score
    FROM search_messages
    WHERE conversation_id = ANY($1::uuid[]) AND {matches}
) AS s
ORDER BY score DESC, created_at DESC, seq DESC, message_id
LIMIT ${words + 2} OFFSET ${words + 3}
"""  # noqa: S608


async def _fetch(connection: Any, statement: str, *args: Any) -> list[Any]:
    """Rows (asyncpg records, read by column name) of a statement on an asyncpg connection."""
    rows: list[Any] = await connection.fetch(statement, *args)
    return rows


_SHARING = {1: ("any",), 2: ("all", "any"), 3: ("all", "most", "any")}


class PostgresSearchIndex:
    """The search index in the PostgreSQL database Tortoise has open."""

    backend = "postgres"

    # How many times cheaper a walk must look than the tiers to be taken, and
    # how many rows it may visit before giving up.
    WALK_GAIN = 3.0
    # The "all but one" interest tier is tried for up to this many interests.
    MOST_UP_TO = 6
    WALK_VISITS = 4000

    def __init__(self, conn: BaseDBAsyncClient | None = None) -> None:
        self._conn = conn
        self._words = NameWords()
        self.walks = 0  # searches answered by a walk (for tests and benchmarks)

    def _client(self) -> BaseDBAsyncClient:
        return self._conn or sql.connection()

    async def ping(self) -> None:
        try:
            await sql.fetch("SELECT 1 FROM search_people LIMIT 1", [], conn=self._client())
        except Exception as exc:
            raise UnavailableError(f"search index unreachable: {type(exc).__name__}") from exc

    async def close(self) -> None:
        return None  # the database belongs to the application's lifespan

    async def _write(self, statement: str, rows: list[dict[str, Any]]) -> None:
        async with in_transaction(self._client().connection_name) as conn:
            for start in range(0, len(rows), BATCH):
                chunk = json.dumps(rows[start : start + BATCH])
                await sql.fetch(statement, [chunk], conn=conn)

    async def upsert_people(self, docs: Sequence[PersonDoc]) -> None:
        rows = [
            {
                "user_id": p.user_id,
                "name": p.name,
                "nickname": p.nickname,
                "interests": list(p.interests),
                "visibility": p.visibility,
            }
            for p in prepare_people(docs)
        ]
        if rows:
            await self._write(_UPSERT_PEOPLE, rows)

    async def delete_people(self, user_ids: Sequence[str]) -> None:
        await self._delete("DELETE FROM search_people WHERE user_id = ANY(?::uuid[])", user_ids)

    async def upsert_messages(self, docs: Sequence[MessageDoc]) -> None:
        rows = [
            {
                "message_id": m.message_id,
                "conversation_id": m.conversation_id,
                "seq": m.seq,
                "sender_id": m.sender_id,
                "body": m.body,
                "created_at": m.created_at.isoformat(),
            }
            for m in prepare_messages(docs)
        ]
        if rows:
            await self._write(_UPSERT_MESSAGES, rows)

    async def delete_messages(self, message_ids: Sequence[str]) -> None:
        await self._delete(
            "DELETE FROM search_messages WHERE message_id = ANY(?::uuid[])", message_ids
        )

    async def _delete(self, statement: str, ids: Sequence[str]) -> None:
        if ids:
            await sql.fetch(statement, [canonical_ids(ids)], conn=self._client())

    async def search_people(
        self,
        *,
        query: str,
        interests: Sequence[str],
        exclude: Collection[str],
        contacts_of: Collection[str],
        limit: int,
        offset: int,
    ) -> list[PersonHit]:
        search = PeopleSearch.of(
            query=query,
            interests=interests,
            exclude=exclude,
            contacts_of=contacts_of,
            limit=limit,
            offset=offset,
        )
        if search.is_empty:
            return []
        audience = [list(search.exclude), list(search.contacts_of)]
        # People search is the hot path: asyncpg directly, without the ORM's
        # per-call wrapping (a name search makes up to eight calls).
        async with self._client().acquire_connection() as connection:
            if search.query and search.interests:
                rows = await self._people_by_query_and_interests(connection, search, audience)
            elif search.query:
                rows = await self._people_by_score(connection, search, audience)
            else:
                rows = await self._people_by_interests(connection, search, audience)
        return [
            PersonHit(user_id=r["user_id"], shared_interests=r["shared"], score=float(r["score"]))
            for r in rows
        ]

    async def _people_by_score(
        self, connection: Any, search: PeopleSearch, audience: list[list[str]]
    ) -> list[Any]:
        statement = _people_by_query(0)
        need = search.offset + search.limit
        await self._words.update(connection)
        start = self._words.walk_threshold(search.query, need, self.WALK_GAIN)
        async with connection.transaction():
            if start is not None:
                rows = await self._walk(connection, search, audience, start, need)
                if rows is not None:
                    self.walks += 1
                    return rows[search.offset :]
            for threshold in TIERS:
                setting = _threshold(threshold)
                # One round trip: the first tier also sets the plan mode.
                first = threshold == TIERS[0]
                await connection.execute(f"{_GENERIC_PLANS}; {setting}" if first else setting)
                tier = _PEOPLE_SCORING_ONE if threshold == 1.0 else statement
                rows = await _fetch(connection, tier, search.query, *audience, need, 0)
                if len(rows) == need:
                    return rows[search.offset :]
            await connection.execute(_threshold(SIMILARITY_THRESHOLD))
            return await _fetch(
                connection, statement, search.query, *audience, search.limit, search.offset
            )

    async def _walk(
        self,
        connection: Any,
        search: PeopleSearch,
        audience: list[list[str]],
        start: float,
        need: int,
    ) -> list[Any] | None:
        """The page by walking ids from ``start`` (see _PEOPLE_WALK); None if it cannot say."""
        await connection.execute(f"{_GENERIC_PLANS}; {_threshold(start)}; {_WALK_PLAN}")
        walked = await _fetch(
            connection, _PEOPLE_WALK, search.query, *audience, need, self.WALK_VISITS
        )
        # Too few within the visits allowed, or someone below the start might
        # round to the lowest score: the tiers will do.
        lowest: Decimal = min((r["score"] for r in walked), default=Decimal(0))
        if len(walked) < need or lowest <= Decimal(str(start)) + Decimal("0.0001"):
            await connection.execute(_TIER_PLAN)
            return None
        above: list[Any] = []
        if lowest < 1:
            await connection.execute(f"{_TIER_PLAN}; {_threshold(float(lowest) + 0.00004)}")
            above = await _fetch(connection, _people_by_query(0), search.query, *audience, need, 0)
        best = {r["user_id"]: r for r in (*walked, *above)}
        return sorted(best.values(), key=lambda r: (-r["score"], r["user_id"]))[:need]

    async def _people_by_query_and_interests(
        self, connection: Any, search: PeopleSearch, audience: list[list[str]]
    ) -> list[Any]:
        n = len(search.interests)
        need = search.offset + search.limit
        slugs = list(search.interests)
        async with connection.transaction():
            await connection.execute(_threshold(SIMILARITY_THRESHOLD))
            # People sharing all the interests rank first, then those sharing all
            # but one, then any. With one interest, all is any; with two, all but
            # one is any. (Name tiers within these, where everyone shares as many,
            # cost more than they saved: 2,000 searches, p50 +1.5 ms, p99 +5 ms.)
            for sharing in _SHARING[min(n, 3 if n <= self.MOST_UP_TO else 2)]:
                rows = await _fetch(
                    connection,
                    _people_by_query(n, sharing=sharing),
                    search.query,
                    *audience,
                    need,
                    0,
                    *slugs,
                    slugs,
                )
                if len(rows) == need:
                    return rows[search.offset :]
            return await _fetch(
                connection,
                _people_by_query(n),
                search.query,
                *audience,
                search.limit,
                search.offset,
                *slugs,
            )

    async def _people_by_interests(
        self, connection: Any, search: PeopleSearch, audience: list[list[str]]
    ) -> list[Any]:
        slugs = list(search.interests)
        need = search.offset + search.limit
        rows = await _fetch(connection, _PEOPLE_SHARING_ALL, slugs, *audience, need, 0)
        if len(rows) == need or len(slugs) == 1:
            # With one interest, everyone found shares all there is to share.
            return rows[search.offset :]
        return await _fetch(
            connection,
            _people_by_interests(len(slugs)),
            slugs,
            *audience,
            search.limit,
            search.offset,
            *slugs,
        )

    async def search_messages(
        self, *, query: str, conversation_ids: Sequence[str], limit: int, offset: int
    ) -> list[MessageHit]:
        search = MessageSearch.of(
            query=query, conversation_ids=conversation_ids, limit=limit, offset=offset
        )
        if search.is_empty:
            return []
        conversations = list(search.conversation_ids)
        need = search.offset + search.limit
        rows = await self._client().execute_query_dict(
            _MESSAGES_EXACT, [conversations, " ".join(search.words), need]
        )
        if len(rows) == need:
            rows = rows[search.offset :]
        else:
            rows = await self._fuzzy(
                _messages_sql(len(search.words)),
                [conversations, *search.words, search.limit, search.offset],
            )
        return [
            MessageHit(
                message_id=r["message_id"],
                conversation_id=r["conversation_id"],
                seq=r["seq"],
                score=float(r["score"]),
            )
            for r in rows
        ]

    async def _fuzzy(self, statement: str, params: list[Any]) -> list[dict[str, Any]]:
        """Run a statement using ``<%`` with Parley's threshold, in a transaction of its own."""
        async with in_transaction(self._client().connection_name) as conn:
            await conn.execute_script(_threshold(SIMILARITY_THRESHOLD))
            rows: list[dict[str, Any]] = await conn.execute_query_dict(statement, params)
            return rows

    async def clear(self) -> None:
        await self._client().execute_script("TRUNCATE search_people, search_messages")
