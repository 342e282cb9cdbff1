"""Conversations and the message send path (ARCHITECTURE.md section 5).

Send: check membership and limits, persist with the next gap-free ``seq`` in
one transaction, then fan ``message:new`` out to every member's user room.
Nothing is acknowledged before it is durable; a resend with the same
``client_msg_id`` returns the stored message and is not delivered again.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol
from uuid import UUID

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from config.errors import InvalidRequestError, NotFoundError
from config.settings import ChatSettings
from realtime.events import MESSAGE_NEW
from server.chats.schemas import (
    ConversationOut,
    ConversationPage,
    MemberOut,
    MessageOut,
    MessagePage,
    TextBody,
)
from server.users.service import UserNotFoundError, UserService
from storage.models import Conversation, Member, Message

log = logging.getLogger(__name__)


class Emitter(Protocol):
    async def emit_to_users(self, event: str, data: Any, user_ids: list[str]) -> None: ...


class ConversationNotFoundError(NotFoundError):
    code = "conversation_not_found"


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


class ChatService:
    def __init__(self, settings: ChatSettings, users: UserService, emitter: Emitter) -> None:
        self._settings = settings
        self._users = users
        self._emitter = emitter

    # -- conversations --------------------------------------------------------

    async def open_direct(
        self, user_id: str, other_id: str, mode: str = "plaintext"
    ) -> ConversationOut:
        """The direct conversation of two users in ``mode``, created on first use."""
        if user_id == other_id:
            raise InvalidRequestError("user_id: cannot open a direct conversation with yourself")
        if not await self._users.exists(other_id):
            raise UserNotFoundError("user_id: no such user")
        key = ":".join((mode, *sorted((user_id, other_id))))
        for _ in range(2):
            conversation = await Conversation.get_or_none(direct_key=key)
            if conversation is not None:
                return await self._conversation_out(conversation)
            try:
                async with in_transaction():
                    conversation = await Conversation.create(
                        kind="direct", mode=mode, direct_key=key, created_by_id=user_id
                    )
                    await Member.bulk_create(
                        [
                            Member(conversation=conversation, user_id=user_id, role="member"),
                            Member(conversation=conversation, user_id=other_id, role="member"),
                        ]
                    )
                return await self._conversation_out(conversation)
            except IntegrityError:
                continue  # the other person opened it at the same moment
        raise RuntimeError("direct conversation vanished while opening it")

    async def list_conversations(
        self, user_id: str, *, limit: int, cursor: str | None
    ) -> ConversationPage:
        query = Conversation.filter(members__user_id=user_id).order_by("id")
        if cursor is not None:
            query = query.filter(id__gt=_uuid(cursor, "cursor"))
        rows = await query.limit(limit + 1)
        page = rows[:limit]
        members: dict[str, list[Member]] = {str(c.id): [] for c in page}
        if page:
            for member in await Member.filter(conversation_id__in=[c.id for c in page]).order_by(
                "joined_at", "id"
            ):
                members[str(member.conversation_id)].append(member)
        outs = [_conversation_out(c, members[str(c.id)]) for c in page]
        return ConversationPage(
            conversations=outs, next_cursor=str(page[-1].id) if len(rows) > limit else None
        )

    async def get_conversation(self, user_id: str, conversation_id: str) -> ConversationOut:
        await self._require_member(user_id, conversation_id)
        conversation = await Conversation.get(id=conversation_id)
        return await self._conversation_out(conversation)

    # -- messages -------------------------------------------------------------

    async def send_message(
        self, user_id: str, conversation_id: str, client_msg_id: str, kind: str, body: TextBody
    ) -> MessageOut:
        if len(body.text) > self._settings.max_text_chars:
            raise InvalidRequestError(
                f"body.text: longer than {self._settings.max_text_chars} characters",
                code="message_too_large",
            )
        await self._require_member(user_id, conversation_id)
        existing = await Message.get_or_none(
            conversation_id=conversation_id, sender_id=user_id, client_msg_id=client_msg_id
        )
        if existing is not None:
            return message_out(existing)
        try:
            async with in_transaction():
                # The UPDATE holds the conversation's row lock until commit, so
                # seqs are handed out one at a time and a rollback leaves no gap.
                await Conversation.filter(id=conversation_id).update(last_seq=F("last_seq") + 1)
                seqs = await Conversation.filter(id=conversation_id).values_list(
                    "last_seq", flat=True
                )
                seq: int = seqs[0]  # type: ignore[assignment]
                message = await Message.create(
                    conversation_id=conversation_id,
                    seq=seq,
                    sender_id=user_id,
                    client_msg_id=client_msg_id,
                    kind=kind,
                    body=body.model_dump(),
                )
        except IntegrityError:
            # The same client_msg_id raced in on another socket or node.
            existing = await Message.get_or_none(
                conversation_id=conversation_id, sender_id=user_id, client_msg_id=client_msg_id
            )
            if existing is None:
                raise
            return message_out(existing)
        out = message_out(message)
        await self._fan_out(conversation_id, out)
        return out

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
        await self._require_member(user_id, conversation_id)
        if before_seq is not None and after_seq is not None:
            raise InvalidRequestError("give before_seq or after_seq, not both")
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

    # -- helpers --------------------------------------------------------------

    async def _fan_out(self, conversation_id: str, message: MessageOut) -> None:
        member_ids = await Member.filter(conversation_id=conversation_id).values_list(
            "user_id", flat=True
        )
        try:
            await self._emitter.emit_to_users(
                MESSAGE_NEW, message.model_dump(mode="json"), [str(m) for m in member_ids]
            )
        except Exception:
            # The message is durable and acked; clients fill the gap on sync.
            log.exception("fan-out of message %s failed", message.id)

    async def _require_member(self, user_id: str, conversation_id: str) -> None:
        _uuid(conversation_id, "conversation_id")
        if not await Member.exists(conversation_id=conversation_id, user_id=user_id):
            raise ConversationNotFoundError("no such conversation, or you are not a member of it")

    async def _conversation_out(self, conversation: Conversation) -> ConversationOut:
        members = await Member.filter(conversation_id=conversation.id).order_by("joined_at", "id")
        return _conversation_out(conversation, members)


def _conversation_out(conversation: Conversation, members: list[Member]) -> ConversationOut:
    return ConversationOut(
        id=str(conversation.id),
        kind=conversation.kind,
        mode=conversation.mode,
        title=conversation.title,
        last_seq=conversation.last_seq,
        members=[MemberOut(user_id=str(m.user_id), role=m.role) for m in members],
        created_at=conversation.created_at,
    )


def _uuid(value: str, field: str) -> UUID:
    try:
        return UUID(str(value))
    except ValueError:
        raise InvalidRequestError(f"{field}: not a valid id") from None
