"""Who may do what in a conversation: membership and roles, checked on every door."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from config.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from storage.models import Conversation, Member

ROLES = ("member", "admin", "owner")


class ConversationNotFoundError(NotFoundError):
    code = "conversation_not_found"


@dataclass(frozen=True)
class Membership:
    conversation: Conversation
    member_id: str
    role: str
    member_ids: list[str]

    def require_role(self, *roles: str) -> None:
        if self.role not in roles:
            raise PermissionDeniedError(
                f"only a conversation {' or '.join(roles)} may do this", code="not_allowed"
            )


def parse_id(value: str, field: str) -> UUID:
    try:
        return UUID(str(value))
    except ValueError:
        raise InvalidRequestError(f"{field}: not a valid id") from None


async def require_member(user_id: str, conversation_id: str) -> Membership:
    """The caller's membership; 404 for a non-member, so ids cannot be probed."""
    parse_id(conversation_id, "conversation_id")
    members = await Member.filter(conversation_id=conversation_id).values_list(
        "id", "user_id", "role"
    )
    mine = next((m for m in members if str(m[1]) == user_id), None)
    if mine is None:
        raise ConversationNotFoundError("no such conversation, or you are not a member of it")
    conversation = await Conversation.get(id=conversation_id)
    return Membership(
        conversation=conversation,
        member_id=str(mine[0]),
        role=str(mine[2]),
        member_ids=[str(m[1]) for m in members],
    )
