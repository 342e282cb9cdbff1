"""Blocking (seed 003): a blocked user's chat requests and direct messages stop.

Blocks are one-way but hide both people from each other in search. The rosters
of the pair's direct conversations are dropped on every node, so the send
path (which reads a cached roster) sees the block at once.
"""

from __future__ import annotations

from tortoise.exceptions import IntegrityError

from config.errors import InvalidRequestError
from server.chats.access import Rosters
from server.users.service import UserNotFoundError, UserService
from storage.models import Block, Conversation


class BlockService:
    def __init__(self, users: UserService, rosters: Rosters) -> None:
        self._users = users
        self._rosters = rosters

    async def block(self, user_id: str, other_id: str) -> None:
        if user_id == other_id:
            raise InvalidRequestError("user_id: you cannot block yourself")
        if not await self._users.exists(other_id):
            raise UserNotFoundError("user_id: no such user")
        try:
            await Block.create(blocker_id=user_id, blocked_id=other_id)
        except IntegrityError:
            return  # blocked already
        await self._changed(user_id, other_id)

    async def unblock(self, user_id: str, other_id: str) -> None:
        if await Block.filter(blocker_id=user_id, blocked_id=other_id).delete():
            await self._changed(user_id, other_id)

    async def blocked(self, user_id: str) -> list[str]:
        rows = (
            await Block.filter(blocker_id=user_id)
            .order_by("-created_at")
            .values_list("blocked_id", flat=True)
        )
        return [str(r) for r in rows]

    async def is_blocked(self, blocker_id: str, blocked_id: str) -> bool:
        return await Block.exists(blocker_id=blocker_id, blocked_id=blocked_id)

    async def _changed(self, a: str, b: str) -> None:
        pair = ":".join(sorted((a, b)))
        keys = [f"{mode}:{pair}" for mode in ("encrypted", "plaintext")]
        for conversation_id in await Conversation.filter(direct_key__in=keys).values_list(
            "id", flat=True
        ):
            await self._rosters.changed(str(conversation_id))
