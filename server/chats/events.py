"""Socket door of messages."""

from __future__ import annotations

from realtime.events import MESSAGE_SEND
from realtime.hub import Principal, SocketHub
from server.chats.schemas import MessageOut, SendMessageEvent
from server.chats.service import ChatService


def register_chat_events(hub: SocketHub, chats: ChatService) -> None:
    async def send_message(principal: Principal, payload: SendMessageEvent) -> MessageOut:
        return await chats.send_message(
            principal.user_id,
            str(payload.conversation_id),
            payload.client_msg_id,
            payload.kind,
            payload.body,
        )

    hub.on(MESSAGE_SEND, SendMessageEvent, send_message)
