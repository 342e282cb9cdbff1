"""Search on SQLite with FTS5 trigram tables, in the application's database.

Tables (migration 0003): ``search_people`` (id, user_id, visibility) with
``search_people_fts`` (name, nickname) sharing its rowid and
``search_person_interests`` (user_id, interest) indexed by interest;
``search_messages`` (id, message_id, conversation_id, seq, sender_id,
created_micros) with ``search_messages_fts`` (body) sharing its rowid.

The FTS5 columns hold normalized text padded like pg_trgm pads words
(similarity.padded), so the trigram tokenizer indexes pg_trgm's trigrams.
FTS5 MATCH requires every trigram of a phrase, which no typo survives; so a
search asks for *any* trigram of the query (of each query word, for
messages), takes the best ``CANDIDATES`` rows by bm25 and rescores them in
Python with the pg_trgm port (base.rank_people / rank_messages), in a worker
thread. Ranking is exact within those candidates.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from config.errors import UnavailableError
from storage import sql
from storage.search.base import (
    CANDIDATES,
    MessageCandidate,
    MessageDoc,
    MessageHit,
    MessageSearch,
    PeopleSearch,
    PersonCandidate,
    PersonDoc,
    PersonHit,
    canonical_ids,
    micros,
    prepare_messages,
    prepare_people,
    rank_messages,
    rank_people,
)
from storage.search.similarity import padded, trigrams

T = TypeVar("T")

# Rows are passed as one JSON parameter per statement and unpacked by json_each,
# so a batch costs a fixed handful of statements whatever its size.
_UPSERT_PEOPLE = [
    """INSERT INTO search_people (user_id, visibility)
       SELECT json_extract(d.value, '$.user_id'), json_extract(d.value, '$.visibility')
       FROM json_each(?) AS d WHERE true
       ON CONFLICT (user_id) DO UPDATE SET visibility = excluded.visibility""",
    """DELETE FROM search_people_fts WHERE rowid IN (
           SELECT p.id FROM search_people AS p JOIN json_each(?) AS d
           ON p.user_id = json_extract(d.value, '$.user_id'))""",
    """INSERT INTO search_people_fts (rowid, name, nickname)
       SELECT p.id, json_extract(d.value, '$.name'), json_extract(d.value, '$.nickname')
       FROM json_each(?) AS d JOIN search_people AS p
       ON p.user_id = json_extract(d.value, '$.user_id')""",
    """DELETE FROM search_person_interests WHERE user_id IN (
           SELECT json_extract(d.value, '$.user_id') FROM json_each(?) AS d)""",
    """INSERT INTO search_person_interests (user_id, interest)
       SELECT json_extract(d.value, '$.user_id'), i.value
       FROM json_each(?) AS d, json_each(json_extract(d.value, '$.interests')) AS i""",
]

_DELETE_PEOPLE = [
    """DELETE FROM search_people_fts WHERE rowid IN (
           SELECT id FROM search_people WHERE user_id IN (SELECT value FROM json_each(?)))""",
    "DELETE FROM search_person_interests WHERE user_id IN (SELECT value FROM json_each(?))",
    "DELETE FROM search_people WHERE user_id IN (SELECT value FROM json_each(?))",
]

_UPSERT_MESSAGES = [
    """INSERT INTO search_messages (message_id, conversation_id, seq, sender_id, created_micros)
       SELECT json_extract(d.value, '$.message_id'), json_extract(d.value, '$.conversation_id'),
              json_extract(d.value, '$.seq'), json_extract(d.value, '$.sender_id'),
              json_extract(d.value, '$.created_micros')
       FROM json_each(?) AS d WHERE true
       ON CONFLICT (message_id) DO UPDATE SET
           conversation_id = excluded.conversation_id, seq = excluded.seq,
           sender_id = excluded.sender_id, created_micros = excluded.created_micros""",
    """DELETE FROM search_messages_fts WHERE rowid IN (
           SELECT m.id FROM search_messages AS m JOIN json_each(?) AS d
           ON m.message_id = json_extract(d.value, '$.message_id'))""",
    """INSERT INTO search_messages_fts (rowid, body)
       SELECT m.id, json_extract(d.value, '$.body')
       FROM json_each(?) AS d JOIN search_messages AS m
       ON m.message_id = json_extract(d.value, '$.message_id')""",
]

_DELETE_MESSAGES = [
    """DELETE FROM search_messages_fts WHERE rowid IN (
           SELECT id FROM search_messages WHERE message_id IN (SELECT value FROM json_each(?)))""",
    "DELETE FROM search_messages WHERE message_id IN (SELECT value FROM json_each(?))",
]

# interests, match, exclude, contacts_of, candidates (in the order they appear).
# Shared interests are counted for the chosen candidates only.
_PEOPLE_CANDIDATES = """
SELECT c.user_id, c.name, c.nickname,
       (SELECT count(*) FROM search_person_interests AS i
        WHERE i.user_id = c.user_id AND i.interest IN (SELECT value FROM json_each(?))) AS shared
FROM (
    SELECT p.user_id, f.name, f.nickname
    FROM search_people_fts AS f JOIN search_people AS p ON p.id = f.rowid
    WHERE search_people_fts MATCH ?
      AND p.user_id NOT IN (SELECT value FROM json_each(?))
      AND (p.visibility = 'everyone' OR p.user_id IN (SELECT value FROM json_each(?)))
    ORDER BY bm25(search_people_fts), p.user_id
    LIMIT ?
) AS c
"""

# interests, interests, exclude, contacts_of, limit, offset
_PEOPLE_BY_INTERESTS = """
SELECT p.user_id,
       (SELECT count(*) FROM search_person_interests AS i
        WHERE i.user_id = p.user_id AND i.interest IN (SELECT value FROM json_each(?))) AS shared
FROM search_people AS p
WHERE p.user_id IN (
    SELECT user_id FROM search_person_interests
    WHERE interest IN (SELECT value FROM json_each(?)))
  AND p.user_id NOT IN (SELECT value FROM json_each(?))
  AND (p.visibility = 'everyone' OR p.user_id IN (SELECT value FROM json_each(?)))
ORDER BY shared DESC, p.user_id
LIMIT ? OFFSET ?
"""

# match, conversations, candidates
_MESSAGE_CANDIDATES = """
SELECT m.message_id, m.conversation_id, m.seq, m.created_micros, f.body
FROM search_messages_fts AS f JOIN search_messages AS m ON m.id = f.rowid
WHERE search_messages_fts MATCH ?
  AND m.conversation_id IN (SELECT value FROM json_each(?))
ORDER BY bm25(search_messages_fts), m.message_id
LIMIT ?
"""


def any_trigram(normalized: str) -> str:
    """An FTS5 query for rows holding at least one pg_trgm trigram of the text.

    Normalized text has only letters, digits and blanks, so no quote or FTS5
    operator can reach the query; quotes are doubled all the same.
    """
    quoted = ('"' + t.replace('"', '""') + '"' for t in sorted(trigrams(normalized)))
    return " OR ".join(quoted)


def each_word(words: Iterable[str]) -> str:
    """An FTS5 query for rows holding a trigram of every word."""
    return " AND ".join(f"({any_trigram(w)})" for w in words)


class SqliteSearchIndex:
    """The search index in the SQLite database Tortoise has open."""

    backend = "sqlite"

    def __init__(self, conn: BaseDBAsyncClient | None = None, *, threads: int = 2) -> None:
        self._conn = conn
        self._limiter = anyio.CapacityLimiter(threads)

    def _client(self) -> BaseDBAsyncClient:
        return self._conn or sql.connection()

    async def _cpu(self, fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(fn, limiter=self._limiter)

    async def ping(self) -> None:
        try:
            await sql.fetch("SELECT 1 FROM search_people LIMIT 1", [], conn=self._client())
        except Exception as exc:
            raise UnavailableError(f"search index unreachable: {type(exc).__name__}") from exc

    async def close(self) -> None:
        return None  # the database belongs to the application's lifespan

    async def _run(self, statements: list[str], payload: Any) -> None:
        param = json.dumps(payload)
        async with in_transaction(self._client().connection_name) as conn:
            for statement in statements:
                await sql.fetch(statement, [param], conn=conn)

    async def upsert_people(self, docs: Sequence[PersonDoc]) -> None:
        rows = [
            {
                "user_id": p.user_id,
                "name": padded(p.name),
                "nickname": padded(p.nickname),
                "interests": list(p.interests),
                "visibility": p.visibility,
            }
            for p in prepare_people(docs)
        ]
        if rows:
            await self._run(_UPSERT_PEOPLE, rows)

    async def delete_people(self, user_ids: Sequence[str]) -> None:
        if user_ids:
            await self._run(_DELETE_PEOPLE, canonical_ids(user_ids))

    async def upsert_messages(self, docs: Sequence[MessageDoc]) -> None:
        rows = [
            {
                "message_id": m.message_id,
                "conversation_id": m.conversation_id,
                "seq": m.seq,
                "sender_id": m.sender_id,
                "created_micros": micros(m.created_at),
                "body": padded(m.body),
            }
            for m in prepare_messages(docs)
        ]
        if rows:
            await self._run(_UPSERT_MESSAGES, rows)

    async def delete_messages(self, message_ids: Sequence[str]) -> None:
        if message_ids:
            await self._run(_DELETE_MESSAGES, canonical_ids(message_ids))

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
        slugs = json.dumps(search.interests)
        audience = [json.dumps(search.exclude), json.dumps(search.contacts_of)]
        if not search.query:
            rows = await sql.fetch(
                _PEOPLE_BY_INTERESTS,
                [slugs, slugs, *audience, search.limit, search.offset],
                conn=self._client(),
            )
            return [
                PersonHit(user_id=r["user_id"], shared_interests=r["shared"], score=0.0)
                for r in rows
            ]
        rows = await sql.fetch(
            _PEOPLE_CANDIDATES,
            [slugs, any_trigram(search.query), *audience, CANDIDATES],
            conn=self._client(),
        )
        candidates = [
            PersonCandidate(
                user_id=r["user_id"],
                name=r["name"],
                nickname=r["nickname"],
                shared_interests=r["shared"],
            )
            for r in rows
        ]
        return await self._cpu(lambda: rank_people(search, candidates))

    async def search_messages(
        self, *, query: str, conversation_ids: Sequence[str], limit: int, offset: int
    ) -> list[MessageHit]:
        search = MessageSearch.of(
            query=query, conversation_ids=conversation_ids, limit=limit, offset=offset
        )
        if search.is_empty:
            return []
        rows = await sql.fetch(
            _MESSAGE_CANDIDATES,
            [each_word(search.words), json.dumps(search.conversation_ids), CANDIDATES],
            conn=self._client(),
        )
        candidates = [
            MessageCandidate(
                message_id=r["message_id"],
                conversation_id=r["conversation_id"],
                seq=r["seq"],
                created_micros=r["created_micros"],
                padded_body=r["body"],
            )
            for r in rows
        ]
        return await self._cpu(lambda: rank_messages(search, candidates))

    async def clear(self) -> None:
        async with in_transaction(self._client().connection_name) as conn:
            for table in (
                "search_people_fts",
                "search_person_interests",
                "search_people",
                "search_messages_fts",
                "search_messages",
            ):
                await conn.execute_query(f"DELETE FROM {table}")  # noqa: S608 (fixed names)
