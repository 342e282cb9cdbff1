"""Bulk rows straight into PostgreSQL with COPY: users, profiles, the search index, the directory.

What the node would have written itself, only faster: the search rows go
through storage.search.base.prepare_people (the normalization
PostgresSearchIndex.upsert_people stores), the directory holds
server.contacts.service.phone_hash of each number under the node's secret.
No outbox events are written, so the node's indexer has nothing to redo.
Identities are not created: matching reads only ``phone_directory``.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench.search.people import PeopleGenerator, Person
from server.contacts.service import phone_hash
from storage.search.base import PersonDoc, prepare_people

BATCH = 50_000
_CODE_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"


def user_code(n: int) -> str:
    """A distinct 12-symbol public code per index (real ones are random)."""
    out = []
    for _ in range(12):
        n, digit = divmod(n, len(_CODE_ALPHABET))
        out.append(_CODE_ALPHABET[digit])
    return "".join(reversed(out))


def _people_rows(
    ids: Sequence[uuid.UUID], people: Sequence[Person], start: int, now: datetime
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    users = [
        (uid, user_code(start + i), p.nickname, p.first_name, p.last_name, now, now)
        for i, (uid, p) in enumerate(zip(ids, people, strict=True))
    ]
    profiles = [
        (uid, p.age, p.gender, json.dumps(list(p.interests)), p.visibility, "", "", now)
        for uid, p in zip(ids, people, strict=True)
    ]
    docs = prepare_people(
        [
            PersonDoc(
                user_id=str(uid),
                name=f"{p.first_name} {p.last_name}".strip(),
                nickname=p.nickname,
                interests=p.interests,
                visibility=p.visibility,
            )
            for uid, p in zip(ids, people, strict=True)
        ]
    )
    index = [
        (uuid.UUID(d.user_id), d.name, d.nickname, list(d.interests), d.visibility) for d in docs
    ]
    return users, profiles, index


async def add_people(
    conn: asyncpg.Connection,
    generator: PeopleGenerator,
    n: int,
    *,
    start: int,
    indexed: bool,
) -> list[tuple[uuid.UUID, Person]]:
    """``n`` users with profiles (and search rows when ``indexed``); their ids and people."""
    now = datetime.now(UTC)
    out: list[tuple[uuid.UUID, Person]] = []
    for offset in range(0, n, BATCH):
        people = list(generator.people(min(BATCH, n - offset)))
        ids = [uuid.uuid4() for _ in people]
        users, profiles, index = _people_rows(ids, people, start + offset, now)
        await conn.copy_records_to_table(
            "users",
            records=users,
            columns=[
                "id",
                "code",
                "nickname",
                "first_name",
                "last_name",
                "created_at",
                "updated_at",
            ],
        )
        await conn.copy_records_to_table(
            "profiles",
            records=profiles,
            columns=[
                "user_id",
                "age",
                "gender",
                "interests",
                "visibility",
                "status_state",
                "status_text",
                "updated_at",
            ],
        )
        if indexed:
            await conn.copy_records_to_table(
                "search_people",
                records=index,
                columns=["user_id", "name", "nickname", "interests", "visibility"],
            )
        out.extend(zip(ids, people, strict=True))
    return out


async def add_directory(
    conn: asyncpg.Connection, secret: bytes, entries: Iterable[tuple[str, uuid.UUID]]
) -> int:
    """Directory rows (number's keyed hash, user); how many."""
    count = 0
    chunk: list[tuple[str, uuid.UUID]] = []

    async def flush() -> None:
        await conn.copy_records_to_table(
            "phone_directory", records=chunk, columns=["phone_hash", "user_id"]
        )
        chunk.clear()

    for e164, user_id in entries:
        chunk.append((phone_hash(secret, e164), user_id))
        count += 1
        if len(chunk) == BATCH:
            await flush()
    if chunk:
        await flush()
    return count


async def add_social(
    conn: asyncpg.Connection,
    searchers: Sequence[str],
    people: Sequence[uuid.UUID],
    *,
    listed_by: int,
    blocks: int,
    rng: random.Random,
) -> None:
    """Each searcher is in ``listed_by`` people's address books and blocked ``blocks`` people.

    The search route loads both per request (the exclude and contacts_of of
    search_people), so they should not be empty.
    """
    now = datetime.now(UTC)
    contact_rows = []
    block_rows = []
    for searcher in searchers:
        sid = uuid.UUID(searcher)
        picked = rng.sample(list(people), listed_by + blocks)
        contact_rows += [(uuid.uuid4(), owner, sid, now) for owner in picked[:listed_by]]
        block_rows += [(uuid.uuid4(), sid, other, now) for other in picked[listed_by:]]
    await conn.copy_records_to_table(
        "user_contacts",
        records=contact_rows,
        columns=["id", "owner_id", "contact_id", "created_at"],
    )
    await conn.copy_records_to_table(
        "blocks", records=block_rows, columns=["id", "blocker_id", "blocked_id", "created_at"]
    )


async def analyze(conn: asyncpg.Connection, tables: Sequence[str]) -> float:
    """VACUUM ANALYZE (statistics and the visibility map, as autovacuum would leave them)."""
    started = time.perf_counter()
    for table in tables:
        await conn.execute(f"VACUUM ANALYZE {table}")
    return time.perf_counter() - started
