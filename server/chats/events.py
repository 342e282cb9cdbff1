"""Socket doors of messages, receipts, typing and sync."""

from __future__ import annotations

from typing import Any

from realtime.events import MESSAGE_DELETE, MESSAGE_EDIT, MESSAGE_SEND, RECEIPT, SYNC, TYPING_SEND
from realtime.hub import Principal, SocketHub
from server.chats.messages import MessageService
from server.chats.schemas import (
    DeleteMessageEvent,
    EditMessageEvent,
    MessageOut,
    ReceiptEvent,
    ReceiptOut,
    SendMessageEvent,
    SyncPage,
    SyncRequest,
    TypingEvent,
)


def register_chat_events(hub: SocketHub, messages: MessageService) -> None:
    async def send_message(principal: Principal, payload: SendMessageEvent) -> dict[str, Any]:
        sent = await messages.send(
            principal.user_id,
            str(payload.conversation_id),
            payload.client_msg_id,
            payload.kind,
            payload.body,
        )
        return sent.wire()  # the same dict as the fan-out's: dumped once

    async def edit_message(principal: Principal, payload: EditMessageEvent) -> MessageOut:
        return await messages.edit(
            principal.user_id,
            str(payload.conversation_id),
            str(payload.message_id),
            payload.client_msg_id,
            payload.body,
        )

    async def delete_message(principal: Principal, payload: DeleteMessageEvent) -> MessageOut:
        return await messages.delete(
            principal.user_id,
            str(payload.conversation_id),
            str(payload.message_id),
            payload.client_msg_id,
        )

    async def receipt(principal: Principal, payload: ReceiptEvent) -> ReceiptOut:
        return await messages.receipt(
            principal.user_id, str(payload.conversation_id), payload.seq, payload.kind
        )

    async def typing(principal: Principal, payload: TypingEvent) -> None:
        await messages.typing(principal.user_id, str(payload.conversation_id), payload.state)

    async def sync(principal: Principal, payload: SyncRequest) -> SyncPage:
        return await messages.sync(
            principal.user_id,
            {str(k): v for k, v in payload.positions.items()},
            cursor=str(payload.cursor) if payload.cursor else None,
            conversations_per_page=50,
            messages_per_conversation=payload.limit,
        )

    hub.on(MESSAGE_SEND, SendMessageEvent, send_message)
    hub.on(MESSAGE_EDIT, EditMessageEvent, edit_message)
    hub.on(MESSAGE_DELETE, DeleteMessageEvent, delete_message)
    hub.on(RECEIPT, ReceiptEvent, receipt)
    hub.on(TYPING_SEND, TypingEvent, typing)
    hub.on(SYNC, SyncRequest, sync)
