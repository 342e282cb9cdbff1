"""Socket event names. Payload models live in each domain's ``schemas.py``.

Client to server events take an ack; the ack is ``{"data": ...}`` on success
and ``{"error": {"code", "message"}}`` on failure (docs/PROTOCOL.md).
"""

from typing import Any, Final, Protocol

# client -> server
MESSAGE_SEND: Final = "message:send"
MESSAGE_EDIT: Final = "message:edit"
MESSAGE_DELETE: Final = "message:delete"
RECEIPT: Final = "receipt"
TYPING_SEND: Final = "typing:update"
SYNC: Final = "sync"

# server -> client
MESSAGE_NEW: Final = "message:new"
RECEIPT_UPDATED: Final = "receipt:updated"
TYPING: Final = "typing"
SESSION_REVOKED: Final = "session:revoked"
KEYS_CHANGED: Final = "keys:changed"
PRESENCE_UPDATED: Final = "presence:updated"
CONTACT_JOINED: Final = "contact:joined"
STATUS_UPDATED: Final = "status:updated"
CHAT_REQUEST_NEW: Final = "chat_request:new"
CHAT_REQUEST_UPDATED: Final = "chat_request:updated"
# A tip changed state (server/tips); to the sender, and to the recipient once sent.
TIP_UPDATED: Final = "tip:updated"


def user_room(user_id: str) -> str:
    """Every socket of a user joins this room, and only this room, at connect."""
    return f"user:{user_id}"


class Emitter(Protocol):
    """What domain services need of the hub: one emit to every socket of some users."""

    async def emit_to_users(self, event: str, data: Any, user_ids: list[str]) -> None: ...
