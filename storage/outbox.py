"""The outbox: an event per change that the search index and contact matching follow.

Written with ``record`` in the same transaction as the change (pass its
connection), so the log never misses a committed write nor holds a rolled-back
one. Events carry ids only; the indexer reads the current state when it
applies them, so replaying an event is harmless.
"""

from __future__ import annotations

from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from storage.models import Event

PERSON = "person"  # {"user_id"}: names, profile, visibility changed, or the user was deleted
PHONE = "phone"  # {"user_id"}: the user's verified phone numbers changed
MESSAGE = "message"  # {"message_id"}: a plaintext message, or an edit or delete of one


async def record(kind: str, payload: dict[str, Any], conn: BaseDBAsyncClient | None = None) -> int:
    """Append an event; its id, which ``GET /v1/events/{id}`` reports on."""
    event = await Event.create(kind=kind, payload=payload, using_db=conn)
    return int(event.id)


async def record_many(
    kind: str, payloads: list[dict[str, Any]], conn: BaseDBAsyncClient | None = None
) -> None:
    if payloads:
        await Event.bulk_create([Event(kind=kind, payload=p) for p in payloads], using_db=conn)
