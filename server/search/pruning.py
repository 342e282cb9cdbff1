"""Pruning the outbox: events the indexer applied, once past the retention window.

Without it ``events`` grows with every write forever. An event is deleted only
when both hold:

- the indexer has applied it (its id is at or below the committed position),
  so nothing still to be indexed is ever lost, and ``GET /v1/events/{id}``
  answers a pruned id from the position alone (``indexed: true``);
- it is older than ``PARLEY_SEARCH_EVENT_RETENTION``, so a recent write can
  still be looked at while investigating the index.

The newest event is always kept: ``parley reindex`` sets the position to the
highest id in the table, which must never fall below an id already pruned.

The log is cut from its old end, in batches of ``PRUNE_BATCH`` ids (one short
statement each, so neither SQLite's write lock nor PostgreSQL's row locks are
held for long), and a round stops at the first batch with nothing old enough:
it never walks the recent part of the log. Events are nearly in time order
(ids are taken at insert); one a few moments out of order waits for the next
round.

Every node runs the loop; only the node holding the indexer's lease prunes.
Deleting is idempotent and bounded by the position, so two nodes overlapping
for a moment, or ``parley prune-events`` run by hand at the same time, is
harmless.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from tortoise.expressions import Subquery

from config.errors import UnavailableError
from config.settings import SearchSettings
from server.search.indexer import Indexer, committed_position
from storage import sql
from storage.models import Event

log = logging.getLogger(__name__)

PRUNE_BATCH = 5_000


async def prune_events(
    older_than: timedelta, *, batch: int = PRUNE_BATCH, now: datetime | None = None
) -> int:
    """Delete applied events older than ``older_than``, ``batch`` ids a statement; how many."""
    cutoff = (now or datetime.now(UTC)) - older_than
    position = await committed_position()
    row = await sql.fetch_one("SELECT COALESCE(MAX(id), 0) AS last FROM events", [])
    newest = int(row["last"]) if row is not None else 0
    through = min(position, newest - 1)
    deleted = 0
    while through > 0:
        oldest = (
            Event.filter(id__lte=through).order_by("id").limit(batch).values_list("id", flat=True)
        )
        count = await Event.filter(id__in=Subquery(oldest), created_at__lt=cutoff).delete()
        if not count:
            break
        deleted += count
    if deleted:
        log.info("pruned events", extra={"deleted": deleted, "position": position})
    return deleted


async def run_pruning_loop(settings: SearchSettings, indexer: Indexer) -> None:
    """Background task: a round every ``event_prune_interval`` seconds, on the indexer's node."""
    retention = timedelta(seconds=settings.event_retention)
    while True:
        await asyncio.sleep(settings.event_prune_interval)
        try:
            if await indexer.leads():
                await prune_events(retention)
        except asyncio.CancelledError:
            raise
        except UnavailableError as exc:
            log.warning("event pruning waiting: %s", exc.message)
        except Exception:
            log.warning("event pruning failed", exc_info=True)
