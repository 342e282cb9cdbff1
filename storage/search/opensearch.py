"""Search on OpenSearch (opensearch-py's AsyncOpenSearch), for large deployments.

Two indexes, ``{prefix}-people`` and ``{prefix}-messages`` (created on first
use, one shard each; the document id is the user or message id)::

    people:   user_id     keyword
              name        keyword, not indexed   normalized, for rescoring
              nickname    keyword, not indexed   normalized, for rescoring
              trigrams    keyword                pg_trgm trigrams of name and nickname
              interests   keyword
              visibility  keyword
    messages: message_id, conversation_id, sender_id   keyword
              seq         long
              created_at  date
              text        text, standard analyzer    normalized text

People: the trigrams are computed here (similarity.trigrams) rather than by an
n-gram analyzer, because pg_trgm's padded word-boundary trigrams ("  j",
"hn ") are what make short and prefix queries match and no built-in analyzer
produces exactly those. A query asks for any of its trigrams, scoring one per
trigram shared; the best ``CANDIDATES`` are rescored with the pg_trgm port
(base.rank_people), so people search ranks as on PostgreSQL and SQLite.
Interest-only searches run entirely in OpenSearch (one point per interest).

Messages use OpenSearch's own fuzzy matching: every query word must match a
word of the text within ``fuzziness: AUTO`` (exact up to 2 letters, one edit
up to 5, two beyond) or, from 3 letters on, be its prefix. Order: relevance
(BM25), newest, seq, id; the score is relevance over the best match's, in
[0, 1].

Writes use the bulk API with ``refresh="wait_for"``: they are searchable when
the call returns.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import RequestError, TransportError
from opensearchpy.helpers import async_bulk

from config.errors import UnavailableError
from storage.search.base import (
    CANDIDATES,
    MessageDoc,
    MessageHit,
    MessageSearch,
    PeopleSearch,
    PersonCandidate,
    PersonDoc,
    PersonHit,
    as_numeric,
    canonical_ids,
    prepare_messages,
    prepare_people,
    rank_people,
    rounded,
)
from storage.search.similarity import trigrams

T = TypeVar("T")

_KEYWORD = {"type": "keyword"}
_STORED_ONLY = {"type": "keyword", "index": False, "doc_values": False}

PEOPLE_INDEX = {
    "settings": {"index": {"number_of_shards": 1}},
    "mappings": {
        "dynamic": "strict",
        "properties": {
            "user_id": _KEYWORD,
            "name": _STORED_ONLY,
            "nickname": _STORED_ONLY,
            "trigrams": _KEYWORD,
            "interests": _KEYWORD,
            "visibility": _KEYWORD,
        },
    },
}

MESSAGES_INDEX = {
    "settings": {"index": {"number_of_shards": 1}},
    "mappings": {
        "dynamic": "strict",
        "properties": {
            "message_id": _KEYWORD,
            "conversation_id": _KEYWORD,
            "sender_id": _KEYWORD,
            "seq": {"type": "long"},
            "created_at": {"type": "date"},
            "text": {"type": "text", "analyzer": "standard"},
        },
    },
}


@contextmanager
def _translated() -> Iterator[None]:
    """OpenSearch down or failing: UnavailableError; a refused request stays as it is."""
    try:
        yield
    except OpenSearchConnectionError as exc:
        raise UnavailableError(f"search index unreachable: {type(exc).__name__}") from exc
    except TransportError as exc:
        if isinstance(exc.status_code, int) and exc.status_code >= 500:
            raise UnavailableError(f"search index failing: {exc.status_code}") from exc
        raise


def _one_point_each(field: str, values: Sequence[str]) -> dict[str, Any]:
    """Match at least one value; the score counts the values matched."""
    return {
        "bool": {
            "should": [{"constant_score": {"filter": {"term": {field: v}}}} for v in values],
            "minimum_should_match": 1,
        }
    }


class OpenSearchSearchIndex:
    """The search index in an OpenSearch cluster shared by every node."""

    backend = "opensearch"

    def __init__(self, client: AsyncOpenSearch, *, prefix: str = "parley", threads: int = 2):
        self._client = client
        self.people_index = f"{prefix}-people"
        self.messages_index = f"{prefix}-messages"
        self._ready = False
        self._limiter = anyio.CapacityLimiter(threads)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "parley") -> OpenSearchSearchIndex:
        client = AsyncOpenSearch(hosts=[url], timeout=10, max_retries=2, retry_on_timeout=True)
        return cls(client, prefix=prefix)

    async def _ensure_indexes(self) -> None:
        if self._ready:
            return
        with _translated():
            for name, body in (
                (self.people_index, PEOPLE_INDEX),
                (self.messages_index, MESSAGES_INDEX),
            ):
                if await self._client.indices.exists(index=name):
                    continue
                try:
                    await self._client.indices.create(index=name, body=body)
                except RequestError as exc:
                    if exc.error != "resource_already_exists_exception":  # another node won
                        raise
        self._ready = True

    async def ping(self) -> None:
        with _translated():
            await self._client.info()
        await self._ensure_indexes()

    async def close(self) -> None:
        await self._client.close()

    async def _bulk(self, actions: list[dict[str, Any]]) -> None:
        if not actions:
            return
        await self._ensure_indexes()
        with _translated():
            await async_bulk(
                self._client, actions, refresh="wait_for", ignore_status=(404,), chunk_size=500
            )

    async def upsert_people(self, docs: Sequence[PersonDoc]) -> None:
        await self._bulk(
            [
                {
                    "_op_type": "index",
                    "_index": self.people_index,
                    "_id": p.user_id,
                    "_source": {
                        "user_id": p.user_id,
                        "name": p.name,
                        "nickname": p.nickname,
                        "trigrams": sorted(trigrams(p.name) | trigrams(p.nickname)),
                        "interests": list(p.interests),
                        "visibility": p.visibility,
                    },
                }
                for p in prepare_people(docs)
            ]
        )

    async def delete_people(self, user_ids: Sequence[str]) -> None:
        await self._bulk(
            [
                {"_op_type": "delete", "_index": self.people_index, "_id": i}
                for i in canonical_ids(user_ids)
            ]
        )

    async def upsert_messages(self, docs: Sequence[MessageDoc]) -> None:
        await self._bulk(
            [
                {
                    "_op_type": "index",
                    "_index": self.messages_index,
                    "_id": m.message_id,
                    "_source": {
                        "message_id": m.message_id,
                        "conversation_id": m.conversation_id,
                        "sender_id": m.sender_id,
                        "seq": m.seq,
                        "created_at": m.created_at.isoformat(),
                        "text": m.body,
                    },
                }
                for m in prepare_messages(docs)
            ]
        )

    async def delete_messages(self, message_ids: Sequence[str]) -> None:
        await self._bulk(
            [
                {"_op_type": "delete", "_index": self.messages_index, "_id": i}
                for i in canonical_ids(message_ids)
            ]
        )

    async def _search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        await self._ensure_indexes()
        with _translated():
            response: dict[str, Any] = await self._client.search(index=index, body=body)
        return response

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
        audience: list[dict[str, Any]] = [{"term": {"visibility": "everyone"}}]
        if search.contacts_of:
            audience.append({"terms": {"user_id": list(search.contacts_of)}})
        where: dict[str, Any] = {
            "filter": [{"bool": {"should": audience, "minimum_should_match": 1}}],
            "must_not": [{"terms": {"user_id": list(search.exclude)}}] if search.exclude else [],
        }
        order = [{"_score": "desc"}, {"user_id": "asc"}]
        if not search.query:
            body = {
                "from": search.offset,
                "size": search.limit,
                "_source": False,
                "track_scores": True,
                "query": {
                    "bool": {"must": [_one_point_each("interests", search.interests)], **where}
                },
                "sort": order,
            }
            hits = (await self._search(self.people_index, body))["hits"]["hits"]
            return [
                PersonHit(user_id=h["_id"], shared_interests=round(h["sort"][0]), score=0.0)
                for h in hits
            ]
        body = {
            "size": CANDIDATES,
            "_source": ["name", "nickname", "interests"],
            "query": {
                "bool": {
                    "must": [_one_point_each("trigrams", sorted(trigrams(search.query)))],
                    **where,
                }
            },
            "sort": order,
        }
        hits = (await self._search(self.people_index, body))["hits"]["hits"]
        wanted = set(search.interests)
        candidates = [
            PersonCandidate(
                user_id=h["_id"],
                name=h["_source"]["name"],
                nickname=h["_source"]["nickname"],
                shared_interests=len(wanted.intersection(h["_source"]["interests"])),
            )
            for h in hits
        ]
        return await self._cpu(lambda: rank_people(search, candidates))

    async def _cpu(self, fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(fn, limiter=self._limiter)

    async def search_messages(
        self, *, query: str, conversation_ids: Sequence[str], limit: int, offset: int
    ) -> list[MessageHit]:
        search = MessageSearch.of(
            query=query, conversation_ids=conversation_ids, limit=limit, offset=offset
        )
        if search.is_empty:
            return []
        words = []
        for word in search.words:
            ways: list[dict[str, Any]] = [{"match": {"text": {"query": word, "fuzziness": "AUTO"}}}]
            if len(word) >= 3:
                ways.append({"prefix": {"text": word}})
            words.append({"bool": {"should": ways, "minimum_should_match": 1}})
        body = {
            "from": search.offset,
            "size": search.limit,
            "_source": ["conversation_id", "seq"],
            "track_scores": True,
            "query": {
                "bool": {
                    "must": words,
                    "filter": [{"terms": {"conversation_id": list(search.conversation_ids)}}],
                }
            },
            "sort": [
                {"_score": "desc"},
                {"created_at": "desc"},
                {"seq": "desc"},
                {"message_id": "asc"},
            ],
        }
        result = (await self._search(self.messages_index, body))["hits"]
        best = result.get("max_score") or 0.0
        return [
            MessageHit(
                message_id=h["_id"],
                conversation_id=h["_source"]["conversation_id"],
                seq=h["_source"]["seq"],
                score=float(rounded(as_numeric(h["sort"][0] / best))) if best else 0.0,
            )
            for h in result["hits"]
        ]

    async def drop(self) -> None:
        """Delete both indexes (tests; retiring a deployment's prefix)."""
        with _translated():
            await self._client.indices.delete(
                index=f"{self.people_index},{self.messages_index}", ignore_unavailable=True
            )
        self._ready = False

    async def clear(self) -> None:
        await self._ensure_indexes()
        with _translated():
            await self._client.delete_by_query(
                index=f"{self.people_index},{self.messages_index}",
                body={"query": {"match_all": {}}},
                refresh=True,
                conflicts="proceed",
            )
