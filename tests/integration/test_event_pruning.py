"""Pruning the outbox (``events``) on SQLite and PostgreSQL: only what the indexer applied
and the retention window let go, in batches, on the node running the indexer."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tortoise import connections

from config.settings import DatabaseSettings, SearchSettings
from server.contacts.service import ContactService
from server.search.indexer import NAME, Indexer
from server.search.pruning import prune_events, run_pruning_loop
from server.search.service import EventNotFoundError, SearchService
from storage import outbox
from storage.kv import KeyValueStore, MemoryKeyValueStore
from storage.models import Event, IndexerState
from storage.search import build_search_index

RETENTION = timedelta(days=7)
OLD = timedelta(days=8)
RECENT = timedelta(hours=1)


class Nobody:
    async def emit_to_users(self, event: str, data: Any, user_ids: list[str]) -> None:
        return None


@pytest.fixture
async def log(db: DatabaseSettings) -> AsyncIterator[None]:
    """An empty outbox and no indexer position."""
    conn = connections.get("default")
    for table in ("events", "indexer_state"):
        await conn.execute_script(f'DELETE FROM "{table}"')
    yield


async def append(*ages: timedelta) -> list[int]:
    """Events written ``ages`` ago, in this order; their ids."""
    now = datetime.now(UTC)
    ids = []
    for age in ages:
        event = await Event.create(
            kind=outbox.PERSON, payload={"user_id": str(uuid.uuid4())}, created_at=now - age
        )
        ids.append(int(event.id))
    return ids


async def applied_through(position: int) -> None:
    await IndexerState.update_or_create(name=NAME, defaults={"position": position})


async def left() -> list[int]:
    return [int(i) for i in await Event.all().order_by("id").values_list("id", flat=True)]


def indexer(db: DatabaseSettings, kv: KeyValueStore | None = None) -> Indexer:
    return Indexer(
        build_search_index(db.is_sqlite, None),
        ContactService(b"s" * 32, Nobody()),
        kv or MemoryKeyValueStore(),
        idle=0.02,
    )


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait for them to end.

    redis-py's asyncio client now and then loses a cancellation that arrives
    during a command (redis/redis-py#2028): the task goes on with its loop. So
    cancel again until each has ended.
    """
    for _ in range(50):
        for task in tasks:
            task.cancel()
        _, pending = await asyncio.wait(tasks, timeout=0.1)
        if not pending:
            break
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_applied_old_events_go_in_batches_until_none_is_left(
    db: DatabaseSettings, log: None
) -> None:
    """Applied events past the retention are all deleted, five a statement, the newest kept."""
    ids = await append(*[OLD] * 12, RECENT)
    await applied_through(ids[-1])
    assert await prune_events(RETENTION, batch=5) == 12
    assert await left() == ids[-1:]
    assert await prune_events(RETENTION, batch=5) == 0


async def test_events_the_indexer_has_not_applied_are_kept_however_old(
    db: DatabaseSettings, log: None
) -> None:
    """With the position at the third of six old events, only the first three go."""
    ids = await append(*[OLD] * 6)
    await applied_through(ids[2])
    assert await prune_events(RETENTION, batch=2) == 3
    assert await left() == ids[3:]
    await IndexerState.filter(name=NAME).delete()  # never indexed: nothing is applied
    assert await prune_events(RETENTION) == 0
    assert await left() == ids[3:]


async def test_applied_events_within_the_retention_are_kept(
    db: DatabaseSettings, log: None
) -> None:
    """Applied events younger than the retention stay; the older ones before them go."""
    ids = await append(OLD, OLD, RECENT, RECENT, timedelta(days=6), RECENT)
    await applied_through(ids[-1])
    assert await prune_events(RETENTION) == 2
    assert await left() == ids[2:]


async def test_the_newest_event_stays_so_a_reindex_keeps_the_position(
    db: DatabaseSettings, log: None
) -> None:
    """All applied and old: the newest stays, and `reindex` sets the position no lower."""
    ids = await append(*[OLD] * 4)
    await applied_through(ids[-1])
    assert await prune_events(RETENTION) == 3
    assert await left() == ids[-1:]
    assert await indexer(db).reindex() == ids[-1]


async def test_a_pruned_event_still_reads_as_indexed(db: DatabaseSettings, log: None) -> None:
    """`GET /v1/events/{id}` of a pruned event: indexed, not "no such event"."""
    ids = await append(OLD, OLD, OLD)
    await applied_through(ids[-1])
    await prune_events(RETENTION)
    node = indexer(db)
    search = SearchService(node.index, node, ContactService(b"s" * 32, Nobody()))
    for pruned in ids[:2]:
        assert not await Event.exists(id=pruned)
        status = await search.event(pruned)
        assert status.indexed is True and status.position == ids[-1]
    with pytest.raises(EventNotFoundError):
        await search.event(ids[-1] + 1)


async def test_only_the_node_running_the_indexer_prunes(
    db: DatabaseSettings, kv: KeyValueStore, log: None
) -> None:
    """Of two nodes' prune loops, the one without the indexer's lease deletes nothing."""
    ids = await append(*[OLD] * 5)
    leader, other = indexer(db, kv), indexer(db, kv)
    settings = SearchSettings(event_retention=int(RETENTION.total_seconds()))
    fast = settings.model_copy(update={"event_prune_interval": 0.02})
    running = asyncio.create_task(leader.run())
    loops: list[asyncio.Task[None]] = []
    try:
        deadline = time.monotonic() + 10
        while not (await leader.leads() and await leader.position() == ids[-1]):
            assert time.monotonic() < deadline, "the indexer did not apply the events"
            await asyncio.sleep(0.02)
        assert not await other.leads()
        loops.append(asyncio.create_task(run_pruning_loop(fast, other)))
        await asyncio.sleep(0.3)
        assert await left() == ids
        loops.append(asyncio.create_task(run_pruning_loop(fast, leader)))
        while await left() != ids[-1:]:
            assert time.monotonic() < deadline + 10, "the indexer's node did not prune"
            await asyncio.sleep(0.02)
    finally:
        await stop([*loops, running])
