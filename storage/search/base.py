"""The search index contract: documents, hits, the protocol and its shared rules.

Parley indexes people (profile cards, found by fuzzy name or nickname and
ranked by shared interests) and plaintext messages (found by fuzzy full text
within the searcher's conversations). Three backends implement
``SearchIndex``: SQLite FTS5, PostgreSQL pg_trgm and OpenSearch; the contract
suite in tests/integration/test_search_contract.py runs against each.

"Similar" means pg_trgm's ``word_similarity`` (storage/search/similarity.py)
of normalized text (case folded, accents stripped) reaching
``SIMILARITY_THRESHOLD``:

- a person matches when the whole query is similar to their name and
  nickname taken together ("luke skywalker" finds Luke, nicknamed Skywalker);
  the score is that similarity;
- a message matches when *every* query word is similar to some word of it;
  the score is the mean over the query words.

Queries are cut to ``MAX_QUERY_CHARS`` characters; ``limit`` and ``offset``
are bounded (``ValueError`` beyond). Ids are UUIDs, returned in canonical
lower-case form.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

from storage.search.similarity import (
    normalize,
    trigram_list,
    trigrams,
    word_similarity_of,
)

# One threshold for every backend (pg_trgm's default for ``%``). With
# word_similarity it finds "John Smith" from "Jonh Smiht" (0.36), "Jonh" (0.4),
# a word of five letters or more with one letter wrong, added, dropped or
# swapped (>= 0.33), and nothing from a query sharing a stray trigram. The
# price of that typo tolerance: a word's first two letters weigh as much as a
# typo, so "maria" also matches "Mason" (0.33), ranked below every real Maria.
SIMILARITY_THRESHOLD = 0.3
MAX_LIMIT = 100
MAX_OFFSET = 1000
MAX_QUERY_CHARS = 200
# Every query word must match, so more words only narrow; ten is plenty.
MAX_QUERY_WORDS = 10
MAX_INTERESTS = 100
# Backends that rescore in Python (SQLite, OpenSearch people) rank exactly within
# their best CANDIDATES index matches: enough for the deepest page allowed.
CANDIDATES = MAX_OFFSET + MAX_LIMIT
VISIBILITIES = frozenset({"everyone", "contacts"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class PersonDoc:
    user_id: str
    name: str  # "first last" (may be empty)
    nickname: str  # may be empty
    interests: tuple[str, ...]  # catalogue slugs like "hiking", "jazz"
    visibility: str  # "everyone" | "contacts" (hidden users are not indexed)


@dataclass(frozen=True, slots=True)
class MessageDoc:
    message_id: str
    conversation_id: str
    seq: int
    sender_id: str
    text: str  # text or image caption, <= 4000 chars
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PersonHit:
    user_id: str
    shared_interests: int
    score: float  # name similarity in [0, 1]; 0 when there was no query


@dataclass(frozen=True, slots=True)
class MessageHit:
    message_id: str
    conversation_id: str
    seq: int
    score: float  # relevance in [0, 1], higher is better


class SearchIndex(Protocol):
    """Where the indexer writes people and messages and where searches read them.

    Writes are idempotent (an id replaces its previous document; deleting an
    unknown id is fine) and visible to the next search once they return.
    """

    backend: str  # "sqlite" | "postgres" | "opensearch"

    async def ping(self) -> None:
        """Raise ``UnavailableError`` unless the index answers."""

    async def close(self) -> None: ...

    async def upsert_people(self, docs: Sequence[PersonDoc]) -> None: ...

    async def delete_people(self, user_ids: Sequence[str]) -> None: ...

    async def upsert_messages(self, docs: Sequence[MessageDoc]) -> None: ...

    async def delete_messages(self, message_ids: Sequence[str]) -> None: ...

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
        """People similar to ``query`` and/or sharing ``interests``, best first.

        With a query, a person must match it, and people sharing more interests
        come first, then the more similar, then by id. Without one, people
        sharing at least one interest, most shared first. Never anyone in
        ``exclude``; a "contacts" person only when in ``contacts_of``.
        """

    async def search_messages(
        self, *, query: str, conversation_ids: Sequence[str], limit: int, offset: int
    ) -> list[MessageHit]:
        """Messages of ``conversation_ids`` matching every query word, best then newest first."""

    async def clear(self) -> None:
        """Empty both indexes (``parley reindex``)."""


# --- Shared rules: every backend prepares its input with these. ---


def check_page(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    if not 0 <= offset <= MAX_OFFSET:
        raise ValueError(f"offset must be between 0 and {MAX_OFFSET}")


def canonical_id(value: str) -> str:
    """The canonical form of a UUID string; ``ValueError`` for anything else."""
    return str(uuid.UUID(value))


def canonical_ids(values: Iterable[str]) -> list[str]:
    return sorted({canonical_id(v) for v in values})


def normalize_query(query: str) -> str:
    return normalize(query[:MAX_QUERY_CHARS])


def query_words(query: str) -> list[str]:
    """The distinct words of a message query, in order, at most MAX_QUERY_WORDS."""
    return list(dict.fromkeys(normalize_query(query).split()))[:MAX_QUERY_WORDS]


def clean_interests(interests: Iterable[str]) -> list[str]:
    slugs = sorted({s.strip() for s in interests if s.strip()})
    if len(slugs) > MAX_INTERESTS:
        raise ValueError(f"at most {MAX_INTERESTS} interests")
    return slugs


@dataclass(frozen=True, slots=True)
class IndexedPerson:
    """A PersonDoc as stored: canonical id, normalized names, distinct interests."""

    user_id: str
    name: str
    nickname: str
    interests: tuple[str, ...]
    visibility: str


def prepare_people(docs: Sequence[PersonDoc]) -> list[IndexedPerson]:
    """Validate and normalize; of two docs with one id the later wins."""
    out: dict[str, IndexedPerson] = {}
    for doc in docs:
        if doc.visibility not in VISIBILITIES:
            raise ValueError(f"unknown visibility {doc.visibility!r}")
        user_id = canonical_id(doc.user_id)
        out[user_id] = IndexedPerson(
            user_id=user_id,
            # Names are at most 100 + 100 and 64 characters in Parley; the cap
            # bounds the quadratic worst case of word_similarity.
            name=normalize(doc.name)[:MAX_QUERY_CHARS],
            nickname=normalize(doc.nickname)[:MAX_QUERY_CHARS],
            interests=tuple(clean_interests(doc.interests)),
            visibility=doc.visibility,
        )
    return list(out.values())


@dataclass(frozen=True, slots=True)
class IndexedMessage:
    message_id: str
    conversation_id: str
    seq: int
    sender_id: str
    body: str  # normalized text
    created_at: datetime


def prepare_messages(docs: Sequence[MessageDoc]) -> list[IndexedMessage]:
    out: dict[str, IndexedMessage] = {}
    for doc in docs:
        if doc.created_at.tzinfo is None:
            raise ValueError("created_at must be timezone-aware")
        message_id = canonical_id(doc.message_id)
        out[message_id] = IndexedMessage(
            message_id=message_id,
            conversation_id=canonical_id(doc.conversation_id),
            seq=doc.seq,
            sender_id=canonical_id(doc.sender_id),
            body=normalize(doc.text),
            created_at=doc.created_at,
        )
    return list(out.values())


@dataclass(frozen=True, slots=True)
class PeopleSearch:
    """search_people's arguments, validated and normalized."""

    query: str  # normalized; "" for none
    interests: tuple[str, ...]
    exclude: tuple[str, ...]
    contacts_of: tuple[str, ...]
    limit: int
    offset: int

    @classmethod
    def of(
        cls,
        *,
        query: str,
        interests: Sequence[str],
        exclude: Collection[str],
        contacts_of: Collection[str],
        limit: int,
        offset: int,
    ) -> PeopleSearch:
        check_page(limit, offset)
        return cls(
            query=normalize_query(query),
            interests=tuple(clean_interests(interests)),
            exclude=tuple(canonical_ids(exclude)),
            contacts_of=tuple(canonical_ids(contacts_of)),
            limit=limit,
            offset=offset,
        )

    @property
    def is_empty(self) -> bool:
        return not self.query and not self.interests


@dataclass(frozen=True, slots=True)
class MessageSearch:
    words: tuple[str, ...]  # normalized, distinct; empty means no result
    conversation_ids: tuple[str, ...]
    limit: int
    offset: int

    @classmethod
    def of(
        cls, *, query: str, conversation_ids: Sequence[str], limit: int, offset: int
    ) -> MessageSearch:
        check_page(limit, offset)
        return cls(
            words=tuple(query_words(query)),
            conversation_ids=tuple(canonical_ids(conversation_ids)),
            limit=limit,
            offset=offset,
        )

    @property
    def is_empty(self) -> bool:
        return not self.words or not self.conversation_ids


def as_numeric(value: float) -> Decimal:
    """A similarity as PostgreSQL's ``float4::numeric`` gives it (six significant digits)."""
    return Decimal(f"{value:.6g}")


def rounded(value: Decimal) -> Decimal:
    """PostgreSQL's ``round(value, 4)``: half away from zero.

    Scores are rounded before ranking so that near-equal floats (float4 in
    PostgreSQL, float in Python) order the same way on every backend.
    """
    return value.quantize(Decimal("0.0001"), ROUND_HALF_UP)


def person_similarity(query: frozenset[str], name: str, nickname: str) -> float:
    """word_similarity of the query trigrams to name and nickname together."""
    return word_similarity_of(query, trigram_list(f"{name} {nickname}"))


@dataclass(frozen=True, slots=True)
class PersonCandidate:
    user_id: str
    name: str
    nickname: str
    shared_interests: int


def rank_people(search: PeopleSearch, candidates: Iterable[PersonCandidate]) -> list[PersonHit]:
    """Score, filter, order and page candidates the way PostgreSQL does in SQL."""
    query = trigrams(search.query)
    ranked: list[tuple[int, Decimal, str]] = []
    for c in candidates:
        similarity = person_similarity(query, c.name, c.nickname)
        if similarity >= SIMILARITY_THRESHOLD:
            ranked.append((c.shared_interests, rounded(as_numeric(similarity)), c.user_id))
    ranked.sort(key=lambda r: (-r[0], -r[1], r[2]))
    page = ranked[search.offset : search.offset + search.limit]
    return [PersonHit(user_id=u, shared_interests=s, score=float(score)) for s, score, u in page]


@dataclass(frozen=True, slots=True)
class MessageCandidate:
    message_id: str
    conversation_id: str
    seq: int
    created_micros: int  # for "newest first" across conversations
    padded_body: str  # the normalized text, padded or not


def message_relevance(
    words: Sequence[frozenset[str]], padded_body: str, seen: dict[tuple[int, str], float]
) -> Decimal:
    """Mean best similarity of each query word to a word of the body; 0 if one misses.

    ``seen`` remembers each (query word, body word) pair across the candidates
    of one search: chat vocabulary repeats, so most pairs are looked up.
    """
    body_words = set(padded_body.split())
    total = Decimal(0)
    for i, word in enumerate(words):
        best = 0.0
        for body_word in body_words:
            similarity = seen.get((i, body_word))
            if similarity is None:
                similarity = word_similarity_of(word, trigram_list(body_word))
                seen[(i, body_word)] = similarity
            best = max(best, similarity)
        if best < SIMILARITY_THRESHOLD:
            return Decimal(0)
        total += as_numeric(best)
    return rounded(total / len(words))


def rank_messages(
    search: MessageSearch, candidates: Iterable[MessageCandidate]
) -> list[MessageHit]:
    """Score, filter, order (relevance, newest, seq, id) and page candidates."""
    words = [trigrams(w) for w in search.words]
    seen: dict[tuple[int, str], float] = {}
    ranked: list[tuple[Decimal, MessageCandidate]] = []
    for c in candidates:
        relevance = message_relevance(words, c.padded_body, seen)
        if relevance > 0:
            ranked.append((relevance, c))
    ranked.sort(key=lambda r: (-r[0], -r[1].created_micros, -r[1].seq, r[1].message_id))
    page = ranked[search.offset : search.offset + search.limit]
    return [
        MessageHit(
            message_id=c.message_id, conversation_id=c.conversation_id, seq=c.seq, score=float(s)
        )
        for s, c in page
    ]


def micros(moment: datetime) -> int:
    """Microseconds since the epoch (SQLite stores instants as integers)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
