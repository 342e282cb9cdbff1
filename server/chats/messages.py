"""Messages: the send path, edits and deletes, history, sync, receipts, typing.

Every change in a conversation is a message with the next gap-free ``seq``:
text, image and envelope messages, membership changes (``system``), and edits
and deletes (``edit``/``delete`` messages that name their target and also
update it). So a client that has everything up to ``seq`` N and fetches
``after_seq=N`` sees every change, in order, exactly once.

Send: check membership and limits, persist (seq assigned in the same
transaction), acknowledge, then fan ``message:new`` out to every member's user
room. Nothing is acknowledged before it is durable; a resend with the same
``client_msg_id`` returns the stored message and is not delivered again.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from config.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    ParleyError,
    PermissionDeniedError,
)
from config.settings import ChatSettings
from realtime.events import MESSAGE_NEW, RECEIPT_UPDATED, TYPING, Emitter
from realtime.hub import describe_validation_error
from server.chats.access import (
    ConversationNotFoundError,
    Roster,
    RosterCache,
    Rosters,
    require_member,
)
from server.chats.envelopes import (
    EnvelopeChecker,
    RecipientMismatchError,
    UnknownSenderDeviceError,
)
from server.chats.schemas import (
    ConversationSync,
    ImageBody,
    MessageOut,
    MessagePage,
    ReceiptOut,
    SyncPage,
    TextBody,
)
from server.media.service import attach_to_conversation
from storage import outbox, sql
from storage.batching import Batcher
from storage.models import Member, Message

log = logging.getLogger(__name__)

USER_KINDS = {"text", "image", "envelope"}


class MessageNotFoundError(NotFoundError):
    code = "message_not_found"


def _validated_body(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """An edit's new body, held to the rules of the message kind it replaces."""
    model: type[TextBody] | type[ImageBody]
    if kind == "text":
        model = TextBody
    elif kind == "image":
        model = ImageBody
    else:
        return body  # envelopes are checked whole by the EnvelopeChecker
    try:
        validated: dict[str, Any] = model.model_validate(body).model_dump(mode="json")
        return validated
    except ValidationError as exc:
        raise InvalidRequestError(describe_validation_error(exc)) from None


def message_out(message: Message) -> MessageOut:
    return MessageOut(
        id=str(message.id),
        conversation_id=str(message.conversation_id),
        seq=message.seq,
        sender_id=str(message.sender_id) if message.sender_id else None,
        client_msg_id=message.client_msg_id,
        kind=message.kind,
        body=message.body,
        created_at=message.created_at,
        edited_at=message.edited_at,
        deleted_at=message.deleted_at,
    )


class MessageService:
    def __init__(
        self,
        settings: ChatSettings,
        emitter: Emitter,
        envelopes: EnvelopeChecker,
        rosters: Rosters | None = None,
    ) -> None:
        self._settings = settings
        self._emitter = emitter
        self._envelopes = envelopes
        self._rosters = rosters or Rosters(RosterCache())
        # Sends that arrive together are stored by one statement (PostgreSQL).
        self._appends: Batcher[_Append, int | None] = Batcher(
            _store_appends,
            max_batch=_APPEND_BATCH,
            max_in_flight=_APPENDS_IN_FLIGHT,
            name="parley-message-appends",
        )

    # -- the send path --------------------------------------------------------

    async def send(
        self,
        user_id: str,
        conversation_id: str,
        client_msg_id: str,
        kind: str,
        body: dict[str, Any],
    ) -> MessageOut:
        roster = await self._rosters.cache.member(user_id, conversation_id)
        try:
            try:
                await self._check_body(roster, user_id, client_msg_id, kind, body)
            except (RecipientMismatchError, UnknownSenderDeviceError):
                # Refused on what this node holds in memory (a member or a
                # device may have changed a moment ago): read it again first.
                self._rosters.cache.invalidate(conversation_id)
                self._envelopes.devices.forget_conversation(conversation_id)
                roster = await self._rosters.cache.member(user_id, conversation_id)
                await self._check_body(roster, user_id, client_msg_id, kind, body)
        except ParleyError:
            # A resend gets its first ack even if what the check depends on
            # changed since (a device added, a block): look only when it fails,
            # a resend that passes is answered by the store's unique index.
            existing = await Message.get_or_none(
                conversation_id=conversation_id, sender_id=user_id, client_msg_id=client_msg_id
            )
            if existing is not None:
                return _resent(existing, kind, body)
            raise
        return await self.append(
            conversation_id,
            sender_id=user_id,
            client_msg_id=client_msg_id,
            kind=kind,
            body=body,
            searchable=roster.mode == "plaintext",
        )

    async def append(
        self,
        conversation_id: str,
        *,
        sender_id: str | None,
        client_msg_id: str,
        kind: str,
        body: dict[str, Any],
        notify: list[str] | None = None,
        update: tuple[str, dict[str, Any]] | None = None,
        searchable: bool = False,
    ) -> MessageOut:
        """Store a message with the next seq (and apply ``update`` to its target), then fan out.

        ``notify`` adds users outside the membership (a removed member learns of it).
        ``searchable`` records an outbox event in the same statement, for message
        search (plaintext conversations only).
        A repeated ``client_msg_id`` hits the unique index, which rolls the seq
        back with the insert: the stored message is returned, nothing is sent.
        """
        message_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        try:
            if update is None and sql.is_postgres():
                seq = await self._appends.submit(
                    _Append(
                        message_id=message_id,
                        conversation_id=conversation_id,
                        sender_id=sender_id,
                        client_msg_id=client_msg_id,
                        kind=kind,
                        body=orjson.dumps(body).decode(),
                        created_at=now,
                        searchable=searchable,
                    )
                )
            else:
                seq = await self._append_in_transaction(
                    conversation_id,
                    message_id,
                    sender_id,
                    client_msg_id,
                    kind,
                    body,
                    now,
                    update,
                    searchable,
                )
        except IntegrityError:
            existing = await Message.get_or_none(
                conversation_id=conversation_id, sender_id=sender_id, client_msg_id=client_msg_id
            )
            if existing is None:
                raise
            return _resent(existing, kind, body)
        if seq is None:
            raise ConversationNotFoundError("no such conversation")
        out = MessageOut.model_construct(
            id=message_id,
            conversation_id=conversation_id,
            seq=seq,
            sender_id=sender_id,
            client_msg_id=client_msg_id,
            kind=kind,
            body=body,
            created_at=now,
            edited_at=None,
            deleted_at=None,
        )
        await self._fan_out(conversation_id, out, notify or [])
        return out

    async def _append_in_transaction(
        self,
        conversation_id: str,
        message_id: str,
        sender_id: str | None,
        client_msg_id: str,
        kind: str,
        body: dict[str, Any],
        now: datetime,
        update: tuple[str, dict[str, Any]] | None,
        searchable: bool,
    ) -> int | None:
        async with in_transaction() as conn:
            # The UPDATE holds the conversation's row lock until commit, so seqs are
            # handed out one at a time and a rollback leaves no gap.
            row = await sql.fetch_one(
                "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq",
                [conversation_id],
                conn=conn,
            )
            if row is None:
                return None
            seq = int(row["last_seq"])
            await Message.create(
                id=message_id,
                conversation_id=conversation_id,
                seq=seq,
                sender_id=sender_id,
                client_msg_id=client_msg_id,
                kind=kind,
                body=body,
                created_at=now,
                target_id=update[0] if update is not None else None,
                using_db=conn,
            )
            if searchable:
                await outbox.record(outbox.MESSAGE, {"message_id": message_id}, conn)
            if update is not None:
                target_id, changes = update
                await Message.filter(id=target_id).using_db(conn).update(**changes)
                if kind == "delete":
                    # Earlier edits carry the text too: a delete scrubs them.
                    await (
                        Message.filter(target_id=target_id, kind="edit")
                        .using_db(conn)
                        .update(body={"target": target_id})
                    )
            return seq

    async def _check_body(
        self,
        roster: Roster,
        user_id: str,
        client_msg_id: str,
        kind: str,
        body: dict[str, Any],
    ) -> None:
        if user_id in roster.blocked:
            raise PermissionDeniedError(
                "this person has blocked you; your messages are not delivered", code="blocked"
            )
        mode = roster.mode
        if kind == "envelope":
            if mode != "encrypted":
                raise InvalidRequestError(
                    "kind: envelopes go to encrypted conversations; send text here",
                    code="wrong_mode",
                )
            await self._envelopes.check(
                body,
                conversation_id=roster.conversation_id,
                members=roster.members.keys(),
                sender_id=user_id,
                client_msg_id=client_msg_id,
            )
            return
        if mode == "encrypted":
            raise InvalidRequestError(
                f"kind: {kind} messages would be plaintext; this conversation is encrypted",
                code="wrong_mode",
            )
        if kind == "image":
            await attach_to_conversation(user_id, str(body["media_id"]), roster.conversation_id)
        text = body.get("text") if kind == "text" else body.get("caption", "")
        if isinstance(text, str) and len(text) > self._settings.max_text_chars:
            raise InvalidRequestError(
                f"body: longer than {self._settings.max_text_chars} characters",
                code="message_too_large",
            )

    # -- edits and deletes ----------------------------------------------------

    async def edit(
        self,
        user_id: str,
        conversation_id: str,
        message_id: str,
        client_msg_id: str,
        body: dict[str, Any],
    ) -> MessageOut:
        """Replace a message's body (its sender only); an ``edit`` message records it."""
        # Membership first: to anyone else the conversation's messages do not exist.
        roster = await self._rosters.cache.member(user_id, conversation_id)
        target = await self._target(conversation_id, message_id)
        if target.sender_id is None or str(target.sender_id) != user_id:
            raise PermissionDeniedError("only the sender may edit a message", code="not_allowed")
        if target.deleted_at is not None:
            raise ConflictError("the message was deleted", code="message_deleted")
        body = _validated_body(target.kind, body)
        await self._check_body(roster, user_id, client_msg_id, target.kind, body)
        now = datetime.now(UTC)
        return await self.append(
            conversation_id,
            sender_id=user_id,
            client_msg_id=client_msg_id,
            kind="edit",
            body={"target": message_id, "kind": target.kind, "body": body},
            update=(message_id, {"body": body, "edited_at": now}),
            searchable=roster.mode == "plaintext",
        )

    async def delete(
        self, user_id: str, conversation_id: str, message_id: str, client_msg_id: str
    ) -> MessageOut:
        """Tombstone a message (by its sender, an admin or the owner), recorded as ``delete``."""
        membership = await require_member(user_id, conversation_id)
        target = await self._target(conversation_id, message_id)
        own = target.sender_id is not None and str(target.sender_id) == user_id
        if not own and membership.role not in {"admin", "owner"}:
            raise PermissionDeniedError(
                "only the sender or an admin may delete a message", code="not_allowed"
            )
        if target.deleted_at is not None:
            raise ConflictError("the message was already deleted", code="message_deleted")
        return await self.append(
            conversation_id,
            sender_id=user_id,
            client_msg_id=client_msg_id,
            kind="delete",
            body={"target": message_id},
            update=(message_id, {"body": {}, "deleted_at": datetime.now(UTC)}),
            searchable=membership.conversation.mode == "plaintext",
        )

    async def _target(self, conversation_id: str, message_id: str) -> Message:
        target = await Message.get_or_none(id=message_id, conversation_id=conversation_id)
        if target is None or target.kind not in USER_KINDS:
            raise MessageNotFoundError("no such message in this conversation")
        return target

    # -- reading --------------------------------------------------------------

    async def history(
        self,
        user_id: str,
        conversation_id: str,
        *,
        before_seq: int | None,
        after_seq: int | None,
        limit: int,
    ) -> MessagePage:
        """A page of messages, ascending; newest first page when no bound is given."""
        await require_member(user_id, conversation_id)
        if before_seq is not None and after_seq is not None:
            raise InvalidRequestError("give before_seq or after_seq, not both")
        return await self._page(conversation_id, before_seq, after_seq, limit)

    async def _page(
        self, conversation_id: str, before_seq: int | None, after_seq: int | None, limit: int
    ) -> MessagePage:
        limit = min(limit, self._settings.history_page_max)
        query = Message.filter(conversation_id=conversation_id)
        if after_seq is not None:
            rows = await query.filter(seq__gt=after_seq).order_by("seq").limit(limit + 1)
            has_more = len(rows) > limit
            rows = rows[:limit]
        else:
            if before_seq is not None:
                query = query.filter(seq__lt=before_seq)
            rows = await query.order_by("-seq").limit(limit + 1)
            has_more = len(rows) > limit
            rows = list(reversed(rows[:limit]))
        return MessagePage(messages=[message_out(m) for m in rows], has_more=has_more)

    async def sync(
        self,
        user_id: str,
        positions: dict[str, int],
        *,
        cursor: str | None,
        conversations_per_page: int,
        messages_per_conversation: int,
    ) -> SyncPage:
        """What the client missed: for each of the user's conversations, messages after its seq.

        ``positions`` maps conversation ids the client knows to the last seq it
        holds; a conversation it does not know starts from its newest page.
        Conversations it listed that the user is no longer in come back in
        ``removed``. Paged over conversations (ordered by id) with ``cursor``.
        """
        query = (
            Member.filter(user_id=user_id)
            .select_related("conversation")
            .order_by("conversation_id")
        )
        if cursor is not None:
            query = query.filter(conversation_id__gt=cursor)
        memberships = await query.limit(conversations_per_page + 1)
        page = memberships[:conversations_per_page]
        out: list[ConversationSync] = []
        for member in page:
            conversation = member.conversation
            cid = str(conversation.id)
            known = positions.get(cid)
            if known is not None and known >= conversation.last_seq:
                continue
            messages = await self._page(cid, None, known, messages_per_conversation)
            out.append(
                ConversationSync(
                    conversation_id=cid,
                    last_seq=conversation.last_seq,
                    read_seq=member.read_seq,
                    messages=messages.messages,
                    has_more=messages.has_more,
                )
            )
        removed: list[str] = []
        if cursor is None and positions:
            still = {
                str(c)
                for c in await Member.filter(
                    user_id=user_id, conversation_id__in=list(positions)
                ).values_list("conversation_id", flat=True)
            }
            removed = sorted(set(positions) - still)
        next_cursor = str(page[-1].conversation_id) if len(memberships) > len(page) else None
        return SyncPage(conversations=out, removed=removed, next_cursor=next_cursor)

    # -- receipts and typing --------------------------------------------------

    async def receipt(self, user_id: str, conversation_id: str, seq: int, kind: str) -> ReceiptOut:
        """Move this member's delivered or read mark forward (never back) and tell the others."""
        membership = await require_member(user_id, conversation_id)
        last_seq = membership.conversation.last_seq
        if seq > last_seq:
            raise InvalidRequestError(f"seq: the conversation has only {last_seq} messages")
        moved = await Member.filter(id=membership.member_id, delivered_seq__lt=seq).update(
            delivered_seq=seq
        )
        if kind == "read":  # what was read was delivered, too
            moved += await Member.filter(id=membership.member_id, read_seq__lt=seq).update(
                read_seq=seq
            )
        member = await Member.get(id=membership.member_id)
        receipt = ReceiptOut(
            conversation_id=conversation_id,
            user_id=user_id,
            delivered_seq=member.delivered_seq,
            read_seq=member.read_seq,
        )
        if moved:
            await self._emitter.emit_to_users(
                RECEIPT_UPDATED, receipt.model_dump(mode="json"), membership.member_ids
            )
        return receipt

    async def typing(self, user_id: str, conversation_id: str, state: str) -> None:
        """Tell the other members someone is typing; clients expire it after ``typing_ttl``."""
        roster = await self._rosters.cache.member(user_id, conversation_id)
        others = [m for m in roster.members if m != user_id]
        await self._emitter.emit_to_users(
            TYPING,
            {
                "conversation_id": conversation_id,
                "user_id": user_id,
                "state": state,
                "expires_in": self._settings.typing_ttl,
            },
            others,
        )

    # -- fan-out --------------------------------------------------------------

    async def _fan_out(self, conversation_id: str, message: MessageOut, extra: list[str]) -> None:
        roster = await self._rosters.cache.get(conversation_id)
        recipients = [*(roster.members if roster is not None else []), *extra]
        try:
            await self._emitter.emit_to_users(MESSAGE_NEW, message.wire(), recipients)
        except Exception:
            # The message is durable and acked; clients fill the gap on sync.
            log.exception("fan-out of message %s failed", message.id)


# Seq and insert in one statement; a duplicate client_msg_id fails the whole
# statement (unique index), so the seq increment is rolled back with it.
_APPEND_POSTGRES = """
WITH s AS (
    UPDATE conversations SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq
)
INSERT INTO messages (id, conversation_id, seq, sender_id, client_msg_id, kind, body, created_at)
SELECT ?, ?, s.last_seq, ?, ?, ?, ?::jsonb, ? FROM s
RETURNING seq
"""

# The same, plus the outbox event for message search, in one round trip.
_APPEND_POSTGRES_SEARCHABLE = """
WITH s AS (
    UPDATE conversations SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq
), m AS (
    INSERT INTO messages
        (id, conversation_id, seq, sender_id, client_msg_id, kind, body, created_at)
    SELECT ?, ?, s.last_seq, ?, ?, ?, ?::jsonb, ? FROM s
    RETURNING seq
), e AS (
    INSERT INTO events (kind, payload, created_at) SELECT 'message', ?::jsonb, ? FROM m
)
SELECT seq FROM m
"""


# Sends stored by one statement at most, and statements out at once (a
# statement waiting on one conversation's lock does not hold up the rest).
_APPEND_BATCH = 256
_APPENDS_IN_FLIGHT = 4


@dataclass(frozen=True, slots=True)
class _Append:
    """One message to store with the next seq of its conversation (PostgreSQL)."""

    message_id: str
    conversation_id: str
    sender_id: str | None
    client_msg_id: str
    kind: str
    body: str  # JSON
    created_at: datetime
    searchable: bool


def _resent(existing: Message, kind: str, body: dict[str, Any]) -> MessageOut:
    """The stored message a resend gets, if it is a resend: the same kind of action
    on the same target. Reusing a ``client_msg_id`` for another action would
    otherwise be acked with the earlier message and silently not happen."""
    stored = existing.body if isinstance(existing.body, dict) else {}
    if existing.kind != kind or stored.get("target") != body.get("target"):
        raise ConflictError(
            f"client_msg_id {existing.client_msg_id!r} already belongs to a {existing.kind} "
            "message of yours; use a new one for each message, edit and delete",
            code="client_msg_id_reused",
        )
    return message_out(existing)


async def _store_appends(rows: list[_Append]) -> list[int | BaseException | None]:
    """Store sends that arrived together; each row's seq, or None when its conversation is gone.

    Several rows go in one statement that numbers them per conversation, in
    arrival order, and skips resends (a ``client_msg_id`` already stored by
    that sender): those, and rows whose conversation is gone, come back without
    a seq and are stored one by one (a resend then gets its stored message, a
    vanished conversation None). If the statement fails on a conflict (a
    resend stored by another node in the meantime, a deadlock), it changed
    nothing and every row is stored one by one; any other failure (the
    database unreachable) is every row's outcome, not retried, since a
    statement whose reply was lost may have committed.
    """
    keys = {(r.conversation_id, r.sender_id, r.client_msg_id) for r in rows}
    if len(rows) == 1 or len(keys) != len(rows):
        return [await _outcome(r) for r in rows]
    try:
        stored = await sql.fetch(
            _APPEND_POSTGRES_MANY,
            [
                [r.message_id for r in rows],
                [r.conversation_id for r in rows],
                [r.sender_id for r in rows],
                [r.client_msg_id for r in rows],
                [r.kind for r in rows],
                [r.body for r in rows],
                [r.created_at for r in rows],
                [r.searchable for r in rows],
            ],
        )
    except Exception as exc:
        if not _is_conflict(exc):
            raise
        log.debug("a batch of %d sends conflicted; storing them one by one", len(rows))
        return [await _outcome(r) for r in rows]
    seqs = {str(row["id"]): int(row["seq"]) for row in stored}
    return [seqs[r.message_id] if r.message_id in seqs else await _outcome(r) for r in rows]


def _is_conflict(exc: Exception) -> bool:
    return isinstance(exc, IntegrityError) or "deadlock detected" in str(exc)


async def _outcome(r: _Append) -> int | BaseException | None:
    try:
        return await _store_append(r)
    except Exception as exc:
        return exc


async def _store_append(r: _Append) -> int | None:
    params = [
        r.conversation_id,
        r.message_id,
        r.conversation_id,
        r.sender_id,
        r.client_msg_id,
        r.kind,
        r.body,
        r.created_at,
    ]
    if r.searchable:
        payload = orjson.dumps({"message_id": r.message_id}).decode()
        row = await sql.fetch_one(_APPEND_POSTGRES_SEARCHABLE, [*params, payload, r.created_at])
    else:
        row = await sql.fetch_one(_APPEND_POSTGRES, params)
    return int(row["seq"]) if row is not None else None


# Many sends in one statement: the conversations' rows are locked in id order
# (two nodes storing batches for the same conversations cannot deadlock), each
# conversation's last_seq moves by its number of rows, and the rows take the
# seqs in between in arrival order.
_APPEND_POSTGRES_MANY = """
WITH input AS (
    SELECT * FROM unnest(
        ?::uuid[], ?::uuid[], ?::uuid[], ?::text[], ?::text[], ?::text[],
        ?::timestamptz[], ?::bool[]
    ) WITH ORDINALITY AS t(
        id, conversation_id, sender_id, client_msg_id, kind, body, created_at, searchable, ord
    )
), fresh AS (
    -- Resends (already stored by their sender) are left out; their senders get
    -- the stored message. NULL senders (system messages) are never resends.
    SELECT i.* FROM input i
    WHERE NOT EXISTS (
        SELECT 1 FROM messages m
        WHERE m.conversation_id = i.conversation_id
          AND m.sender_id = i.sender_id
          AND m.client_msg_id = i.client_msg_id
    )
), locked AS (
    SELECT c.id FROM conversations c
    WHERE c.id IN (SELECT conversation_id FROM fresh)
    ORDER BY c.id
    FOR UPDATE
), counts AS (
    SELECT conversation_id, count(*) AS n FROM fresh GROUP BY conversation_id
), s AS (
    UPDATE conversations c SET last_seq = c.last_seq + counts.n
    FROM counts JOIN locked ON locked.id = counts.conversation_id
    WHERE c.id = counts.conversation_id
    RETURNING c.id, c.last_seq, counts.n
), m AS (
    INSERT INTO messages
        (id, conversation_id, seq, sender_id, client_msg_id, kind, body, created_at)
    SELECT i.id, i.conversation_id,
           s.last_seq - s.n + row_number() OVER (PARTITION BY i.conversation_id ORDER BY i.ord),
           i.sender_id, i.client_msg_id, i.kind, i.body::jsonb, i.created_at
    FROM fresh i JOIN s ON s.id = i.conversation_id
    RETURNING id, seq
), e AS (
    INSERT INTO events (kind, payload, created_at)
    SELECT 'message', jsonb_build_object('message_id', m.id::text), i.created_at
    FROM m JOIN input i ON i.id = m.id
    WHERE i.searchable
    ORDER BY i.ord
)
SELECT id, seq FROM m
"""
