"""The indexer: follows the outbox into the search index and the contact matches.

Seed 000's "index that follows the log": every write that changes searchable
or matchable state appended an event in its own transaction; this task
applies them in id order and records its position, so ``GET /v1/events/{id}``
can tell a client whether its write is visible in search yet (the seed's
"loader").

One node at a time runs it: a lease in the key-value store (Redis across
nodes), renewed while the node works. Applying an event reads the current
state of what it names, so applying one twice, or two nodes overlapping for a
moment, is harmless; the position only moves forward.

Ids come from a sequence, and on PostgreSQL a transaction can commit id 11
before id 10. A gap is therefore waited for (``GAP_WAIT``) before it is taken
for a rolled-back transaction and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from config.errors import UnavailableError
from server.contacts.service import ContactService
from storage import outbox, sql
from storage.kv import KeyValueStore
from storage.lease import Lease
from storage.models import Conversation, Event, IndexerState, Message, Profile, User
from storage.search import MessageDoc, PersonDoc, SearchIndex

log = logging.getLogger(__name__)

NAME = "search"
GAP_WAIT = timedelta(seconds=3)
SEARCHABLE_KINDS = ("text", "image")


async def committed_position() -> int:
    """The id of the last event applied: every event at or below it is in the index."""
    state = await IndexerState.get_or_none(name=NAME)
    return state.position if state is not None else 0


def message_text(kind: str, body: dict[str, Any]) -> str:
    value = body.get("text") if kind == "text" else body.get("caption", "")
    return value if isinstance(value, str) else ""


class Indexer:
    def __init__(
        self,
        index: SearchIndex,
        contacts: ContactService,
        kv: KeyValueStore,
        *,
        batch: int = 500,
        idle: float = 0.2,
        lease_ttl: float = 10.0,
    ) -> None:
        self.index = index
        self._contacts = contacts
        self._kv = kv
        self._batch = batch
        self._idle = idle
        self._lease = Lease(kv, f"indexer:{NAME}", ttl=lease_ttl)

    # -- the loop -----------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._loop()
        finally:
            # A node shutting down hands the lease on at once, not after its TTL.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._lease.release())

    async def _loop(self) -> None:
        while True:
            try:
                if await self._lease.hold():
                    # A full batch means more are waiting: go on at once. A short
                    # one means it caught up: let the next events gather for the
                    # idle wait, so a steady stream is indexed in batches rather
                    # than a step (seven queries) per message.
                    while await self.step() >= self._batch:
                        pass
            except asyncio.CancelledError:
                raise
            except UnavailableError as exc:
                log.warning("indexer waiting: %s", exc.message)
            except Exception:
                log.exception("indexer step failed; retrying")
                await asyncio.sleep(1.0)
            await asyncio.sleep(self._idle)

    async def position(self) -> int:
        return await committed_position()

    async def leads(self) -> bool:
        """Whether this node holds the indexer's lease (runs the indexer) now."""
        return await self._lease.held()

    async def step(self) -> int:
        """Apply the next batch of events; how many were applied."""
        position = await self.position()
        events = await Event.filter(id__gt=position).order_by("id").limit(self._batch)
        ready: list[Event] = []
        expected = position + 1
        now = datetime.now(UTC)
        for event in events:
            if event.id != expected and now - event.created_at < GAP_WAIT:
                break  # an earlier id may still commit
            ready.append(event)
            expected = event.id + 1
        if not ready:
            return 0
        await self._apply(ready)
        await self._advance(ready[-1].id)
        return len(ready)

    async def _advance(self, to: int) -> None:
        updated = await IndexerState.filter(name=NAME, position__lt=to).update(position=to)
        if not updated and not await IndexerState.exists(name=NAME):
            await IndexerState.get_or_create(name=NAME, defaults={"position": to})

    # -- applying -----------------------------------------------------------------

    async def _apply(self, events: list[Event]) -> None:
        people: set[str] = set()
        phones: set[str] = set()
        messages: set[str] = set()
        for event in events:
            payload = event.payload if isinstance(event.payload, dict) else {}
            if event.kind == outbox.PERSON:
                people.add(str(payload.get("user_id")))
            elif event.kind == outbox.PHONE:
                phones.add(str(payload.get("user_id")))
            elif event.kind == outbox.MESSAGE:
                messages.add(str(payload.get("message_id")))
        if people:
            await self.index_people(sorted(people))
        for user_id in sorted(phones):
            await self._contacts.sync_phones(user_id)
        if messages:
            await self.index_messages(sorted(messages))

    async def index_people(self, user_ids: list[str]) -> None:
        users = {str(u.id): u for u in await User.filter(id__in=user_ids)}
        profiles = {str(p.user_id): p for p in await Profile.filter(user_id__in=list(users))}
        docs: list[PersonDoc] = []
        for user_id, user in users.items():
            profile = profiles.get(user_id)
            visibility = profile.visibility if profile else "everyone"
            if visibility == "nobody":
                continue
            docs.append(
                PersonDoc(
                    user_id=user_id,
                    name=f"{user.first_name} {user.last_name}".strip(),
                    nickname=user.nickname,
                    interests=tuple(profile.interests) if profile else (),
                    visibility=visibility,
                )
            )
        hidden = [u for u in user_ids if u not in {d.user_id for d in docs}]
        if docs:
            await self.index.upsert_people(docs)
        if hidden:
            await self.index.delete_people(hidden)

    async def index_messages(self, message_ids: list[str]) -> None:
        """Index the messages named, or for edits and deletes, their targets."""
        rows = await Message.filter(id__in=message_ids).values("id", "kind", "target_id")
        targets = {
            str(r["target_id"]) if r["kind"] in ("edit", "delete") else str(r["id"])
            for r in rows
            if r["kind"] in ("edit", "delete", *SEARCHABLE_KINDS)
        }
        targets.discard("None")
        if not targets:
            return
        messages = await Message.filter(id__in=list(targets))
        plaintext = set(
            str(c)
            for c in await Conversation.filter(
                id__in=list({m.conversation_id for m in messages}), mode="plaintext"
            ).values_list("id", flat=True)
        )
        docs = [
            MessageDoc(
                message_id=str(m.id),
                conversation_id=str(m.conversation_id),
                seq=m.seq,
                sender_id=str(m.sender_id),
                text=message_text(m.kind, m.body),
                created_at=m.created_at,
            )
            for m in messages
            if str(m.conversation_id) in plaintext
            and m.kind in SEARCHABLE_KINDS
            and m.deleted_at is None
            and message_text(m.kind, m.body)
        ]
        gone = sorted(targets - {d.message_id for d in docs})
        if docs:
            await self.index.upsert_messages(docs)
        if gone:
            await self.index.delete_messages(gone)

    # -- rebuilding ---------------------------------------------------------------

    async def reindex(self, batch: int = 1000) -> int:
        """Rebuild the index and the phone directory from the database; the position set."""
        row = await sql.fetch_one("SELECT COALESCE(MAX(id), 0) AS last FROM events", [])
        last = int(row["last"]) if row is not None else 0
        await self.index.clear()
        await self._contacts.rebuild_directory()
        people = 0
        offset = 0
        while True:
            ids = [
                str(i)
                for i in await User.all()
                .order_by("id")
                .offset(offset)
                .limit(batch)
                .values_list("id", flat=True)
            ]
            if not ids:
                break
            await self.index_people(ids)
            people += len(ids)
            offset += batch
        plaintext = [
            str(c) for c in await Conversation.filter(mode="plaintext").values_list("id", flat=True)
        ]
        for start in range(0, len(plaintext), 100):
            chunk = plaintext[start : start + 100]
            cursor = 0
            while True:
                ids = [
                    str(i)
                    for i in await Message.filter(
                        conversation_id__in=chunk, kind__in=SEARCHABLE_KINDS
                    )
                    .order_by("id")
                    .offset(cursor)
                    .limit(batch)
                    .values_list("id", flat=True)
                ]
                if not ids:
                    break
                await self.index_messages(ids)
                cursor += batch
        await IndexerState.filter(name=NAME).delete()
        await IndexerState.create(name=NAME, position=last)
        if sql.is_postgres():
            # Fresh statistics at once, not at autovacuum's next pass: the most
            # common name words choose how names are searched (migration 0006).
            await sql.connection().execute_script("ANALYZE search_people, phone_directory")
        log.info("reindexed", extra={"people": people, "position": last})
        return last
