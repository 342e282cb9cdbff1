"""Chat requests (seed 003): ask, then the other person accepts or declines.

The recipient is told at once (``chat_request:new``); accepting opens the
direct conversation in the requested mode, and both people get
``chat_request:updated`` with its id (and the conversation's first system
message, like any new conversation). A user who blocked the sender never sees
the request.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from config.errors import ConflictError, InvalidRequestError, NotFoundError, PermissionDeniedError
from realtime.events import CHAT_REQUEST_NEW, CHAT_REQUEST_UPDATED, Emitter
from server.chats.conversations import ConversationService
from server.chats.schemas import ChatRequestOut, ChatRequestPage
from server.users.profiles import as_seen_by, cards
from server.users.service import UserNotFoundError, UserService
from storage.models import Block, ChatRequest

MAX_PENDING_SENT = 100


class ChatRequestNotFoundError(NotFoundError):
    code = "chat_request_not_found"


class ChatRequestService:
    def __init__(
        self, users: UserService, conversations: ConversationService, emitter: Emitter
    ) -> None:
        self._users = users
        self._conversations = conversations
        self._emitter = emitter

    async def send(self, user_id: str, to_id: str, text: str, mode: str) -> ChatRequestOut:
        if user_id == to_id:
            raise InvalidRequestError("user_id: you cannot send yourself a chat request")
        if not await self._users.exists(to_id):
            raise UserNotFoundError("user_id: no such user")
        if await Block.exists(blocker_id=to_id, blocked_id=user_id):
            raise PermissionDeniedError(
                "this person does not take requests from you", code="blocked"
            )
        if await Block.exists(blocker_id=user_id, blocked_id=to_id):
            raise PermissionDeniedError(
                "you blocked this person; unblock them first", code="blocked"
            )
        async with in_transaction():
            pending = await ChatRequest.filter(
                sender_id=user_id, recipient_id=to_id, state="pending"
            ).first()
            if pending is not None:
                raise ConflictError(
                    f"you already asked this person (request {pending.id})",
                    code="request_pending",
                )
            if (
                await ChatRequest.filter(sender_id=user_id, state="pending").count()
                >= MAX_PENDING_SENT
            ):
                raise ConflictError(
                    f"at most {MAX_PENDING_SENT} requests may wait for an answer",
                    code="too_many_requests",
                )
            request = await ChatRequest.create(
                sender_id=user_id, recipient_id=to_id, text=text, mode=mode
            )
        to_them = (await self._out([request], to_id))[0]
        await self._emitter.emit_to_users(
            CHAT_REQUEST_NEW, to_them.model_dump(mode="json"), [to_id]
        )
        return (await self._out([request], user_id))[0]

    async def accept(self, user_id: str, request_id: str) -> ChatRequestOut:
        request = await self._pending(request_id, recipient_id=user_id)
        if await Block.exists(blocker_id=user_id, blocked_id=request.sender_id):
            raise PermissionDeniedError(
                "you blocked this person; unblock them first", code="blocked"
            )
        conversation = await self._conversations.open_direct(
            user_id, str(request.sender_id), request.mode
        )
        return await self._decide(request, "accepted", user_id, conversation_id=conversation.id)

    async def decline(self, user_id: str, request_id: str) -> ChatRequestOut:
        request = await self._pending(request_id, recipient_id=user_id)
        return await self._decide(request, "declined", user_id)

    async def cancel(self, user_id: str, request_id: str) -> ChatRequestOut:
        request = await self._pending(request_id, sender_id=user_id)
        return await self._decide(request, "cancelled", user_id)

    async def _pending(self, request_id: str, **party: str) -> ChatRequest:
        try:
            request = await ChatRequest.filter(id=request_id, **party).first()
        except (ValueError, IntegrityError):
            request = None
        if request is None:
            raise ChatRequestNotFoundError("no such chat request of yours")
        if request.state != "pending":
            raise ConflictError(f"this request was {request.state} already", code="request_closed")
        return request

    async def _decide(
        self,
        request: ChatRequest,
        state: str,
        acting_id: str,
        conversation_id: str | None = None,
    ) -> ChatRequestOut:
        changed = await ChatRequest.filter(id=request.id, state="pending").update(
            state=state, decided_at=datetime.now(UTC), conversation_id=conversation_id
        )
        if not changed:
            raise ConflictError("this request was answered already", code="request_closed")
        await request.refresh_from_db()
        sender, recipient = str(request.sender_id), str(request.recipient_id)
        views = {}
        for party in (sender, recipient):
            views[party] = (await self._out([request], party))[0]
            await self._emitter.emit_to_users(
                CHAT_REQUEST_UPDATED, views[party].model_dump(mode="json"), [party]
            )
        return views[acting_id]

    async def listing(
        self, user_id: str, box: str, state: str | None, before: str | None, limit: int
    ) -> ChatRequestPage:
        """Incoming or outgoing requests, newest first."""
        query = ChatRequest.filter(
            **({"recipient_id": user_id} if box == "incoming" else {"sender_id": user_id})
        )
        if state:
            query = query.filter(state=state)
        if box == "incoming":
            # Requests from people you blocked stay out of sight.
            blocked = await Block.filter(blocker_id=user_id).values_list("blocked_id", flat=True)
            if blocked:
                query = query.exclude(sender_id__in=list(blocked))
        if before:
            cursor = await ChatRequest.get_or_none(id=before)
            if cursor is None:
                raise InvalidRequestError("before: not a chat request id")
            query = query.filter(created_at__lt=cursor.created_at)
        rows = await query.order_by("-created_at").limit(limit + 1)
        page = rows[:limit]
        return ChatRequestPage(
            requests=await self._out(page, user_id),
            next_before=str(page[-1].id) if len(rows) > limit else None,
        )

    async def _out(self, requests: list[ChatRequest], viewer_id: str) -> list[ChatRequestOut]:
        """The requests as ``viewer_id`` sees them: a sender sees the person they asked as
        that person's visibility allows (``as_seen_by``); a recipient sees the sender
        whole, since asking is showing oneself."""
        people = {
            c.user_id: c
            for c in await cards([str(u) for r in requests for u in (r.sender_id, r.recipient_id)])
        }
        asked = {str(r.recipient_id) for r in requests if str(r.sender_id) == viewer_id}
        seen = {c.user_id: c for c in await as_seen_by(viewer_id, [people[u] for u in asked])}
        return [
            ChatRequestOut(
                id=str(r.id),
                sender=people[str(r.sender_id)],
                recipient=seen.get(str(r.recipient_id), people[str(r.recipient_id)])
                if str(r.sender_id) == viewer_id
                else people[str(r.recipient_id)],
                text=r.text,
                mode=r.mode,
                state=r.state,
                conversation_id=str(r.conversation_id) if r.conversation_id else None,
                created_at=r.created_at,
                decided_at=r.decided_at,
            )
            for r in requests
        ]
