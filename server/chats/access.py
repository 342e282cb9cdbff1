"""Who may do what in a conversation: membership and roles, checked on every door."""

from __future__ import annotations

import abc
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from config.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from storage.models import Block, Conversation, Member

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


@dataclass(frozen=True)
class Roster:
    """Who is in a conversation, for the hot paths (send, fan-out, typing)."""

    conversation_id: str
    kind: str
    mode: str
    members: dict[str, str]  # user_id -> role
    # Direct conversations: members the other member has blocked (may not send).
    blocked: frozenset[str] = frozenset()

    def require(self, user_id: str) -> str:
        """The member's role; 404 for anyone else."""
        role = self.members.get(user_id)
        if role is None:
            raise ConversationNotFoundError("no such conversation, or you are not a member of it")
        return role


# Seconds a cached roster (and a cached device set, server/chats/envelopes.py)
# is trusted without a control message. Every conversation in use is read again
# this often: at 5 s that was 20 reloads a second for 100 busy groups, and a
# burst of them whenever many conversations resumed together.
ROSTER_TTL = 30.0


class NoticeKeptCache(abc.ABC):
    """What a node keeps in memory until a control message drops it (rosters, device sets).

    Every drop bumps a generation, so a database read that started before one
    is not kept (``_may_keep``). Between ``distrust`` (the control subscription
    is lost: drops may be missed) and ``clear`` (subscribed again) nothing is
    kept and every read goes to the database.
    """

    def __init__(self) -> None:
        self._generation = 0
        self._trusted = True

    def _dropped(self) -> None:
        self._generation += 1

    def _may_keep(self, generation: int) -> bool:
        return self._trusted and generation == self._generation

    @abc.abstractmethod
    def _drop_all(self) -> None:
        """Forget every entry (each cache keeps its own)."""

    def clear(self) -> None:
        """Drop everything and trust control messages again."""
        self._dropped()
        self._drop_all()
        self._trusted = True

    def distrust(self) -> None:
        """Control messages may be missed: keep nothing until ``clear``."""
        self.clear()
        self._trusted = False


class RosterCache(NoticeKeptCache):
    """Rosters kept in memory for ``ttl`` seconds and dropped on every membership change.

    Changes made on this node drop the entry at once; other nodes drop theirs
    when the control message arrives (milliseconds); while the node's control
    subscription is lost it keeps none (``NoticeKeptCache``). The TTL bounds
    the one case left, a publish that failed while the other nodes were still
    subscribed.
    """

    def __init__(self, ttl: float = ROSTER_TTL, size: int = 100_000) -> None:
        super().__init__()
        self._ttl = ttl
        self._size = size
        self._entries: dict[str, tuple[float, Roster]] = {}

    async def get(self, conversation_id: str) -> Roster | None:
        now = time.monotonic()
        entry = self._entries.get(conversation_id)
        if entry is not None and entry[0] > now:
            return entry[1]
        generation = self._generation
        parse_id(conversation_id, "conversation_id")
        conversation = await Conversation.filter(id=conversation_id).values("kind", "mode")
        if not conversation:
            self._entries.pop(conversation_id, None)
            return None
        members = await Member.filter(conversation_id=conversation_id).values_list(
            "user_id", "role"
        )
        member_ids = {str(uid): str(role) for uid, role in members}
        kind = conversation[0]["kind"]
        blocked: frozenset[str] = frozenset()
        if kind == "direct" and len(member_ids) == 2:
            blocks = await Block.filter(
                blocker_id__in=list(member_ids), blocked_id__in=list(member_ids)
            ).values_list("blocked_id", flat=True)
            blocked = frozenset(str(b) for b in blocks)
        roster = Roster(
            conversation_id=conversation_id,
            kind=kind,
            mode=conversation[0]["mode"],
            members=member_ids,
            blocked=blocked,
        )
        if self._may_keep(generation):
            if len(self._entries) >= self._size:
                self._entries.clear()  # crude but bounded; rosters refill on demand
            self._entries[conversation_id] = (now + self._ttl, roster)
        return roster

    async def member(self, user_id: str, conversation_id: str) -> Roster:
        roster = await self.get(conversation_id)
        if roster is None:
            raise ConversationNotFoundError("no such conversation, or you are not a member of it")
        roster.require(user_id)
        return roster

    def invalidate(self, conversation_id: str) -> None:
        self._dropped()
        self._entries.pop(conversation_id, None)

    def _drop_all(self) -> None:
        self._entries.clear()


ROSTER_CHANGED = "roster_changed"


class Rosters:
    """The roster cache plus the notice that drops an entry on every node."""

    def __init__(
        self,
        cache: RosterCache,
        publish: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        self.cache = cache
        self._publish = publish

    async def changed(self, conversation_id: str) -> None:
        self.cache.invalidate(conversation_id)
        if self._publish is not None:
            await self._publish({"type": ROSTER_CHANGED, "conversation_id": conversation_id})

    async def on_notice(self, message: dict[str, Any]) -> None:
        self.cache.invalidate(str(message.get("conversation_id")))
