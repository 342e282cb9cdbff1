"""Finding and creating users by the identities they prove."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q, Subquery
from tortoise.transactions import in_transaction

from config.errors import NotFoundError
from server.users.schemas import MeOut, UserOut
from storage import outbox, sql
from storage.models import Block, Identity, Member, User

_CODE_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no 0/o, 1/l look-alikes
_CODE_LENGTH = 12


class UserNotFoundError(NotFoundError):
    code = "user_not_found"


def new_user_code() -> str:
    """Seed 000's stable public ``code``: 12 symbols, 60 random bits."""
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(_CODE_LENGTH))


async def _blocks_with(user_id: str, others: set[str]) -> set[str]:
    """Those of ``others`` this user blocked or was blocked by."""
    if not others:
        return set()
    pairs = await Block.filter(
        Q(blocker_id=user_id, blocked_id__in=others) | Q(blocked_id=user_id, blocker_id__in=others)
    ).values_list("blocker_id", "blocked_id")
    return {str(u) for pair in pairs for u in pair} - {user_id}


def user_out(user: User) -> UserOut:
    return UserOut(
        id=str(user.id),
        code=user.code,
        nickname=user.nickname,
        avatar_media_id=str(user.avatar_media_id) if user.avatar_media_id else None,
        created_at=user.created_at,
    )


@dataclass(frozen=True)
class SignedInUser:
    id: str
    nickname: str


class UserService:
    async def sign_in_with_identity(
        self, kind: str, value: str, *, nickname: str | None, display: str = ""
    ) -> tuple[SignedInUser, bool]:
        """The user owning this verified identity, created on first sight (sign-in hot path)."""
        for _ in range(3):
            row = await sql.fetch_one(
                "SELECT u.id, u.nickname FROM identities i JOIN users u ON u.id = i.user_id"
                " WHERE i.kind = ? AND i.value = ?",
                [kind, value],
            )
            if row is not None:
                user = SignedInUser(id=str(row["id"]), nickname=row["nickname"])
                if nickname is not None and nickname != user.nickname:
                    async with in_transaction():
                        await User.filter(id=user.id).update(
                            nickname=nickname, updated_at=datetime.now(UTC)
                        )
                        await outbox.record(outbox.PERSON, {"user_id": user.id})
                    user = SignedInUser(id=user.id, nickname=nickname)
                return user, False
            try:
                async with in_transaction():
                    created = await User.create(code=new_user_code(), nickname=nickname or "")
                    await Identity.create(
                        user=created,
                        kind=kind,
                        value=value,
                        display=display or value,
                        verified_at=datetime.now(UTC),
                    )
                    await outbox.record(outbox.PERSON, {"user_id": str(created.id)})
                    if kind == "phone":
                        await outbox.record(outbox.PHONE, {"user_id": str(created.id)})
                return SignedInUser(id=str(created.id), nickname=created.nickname), True
            except IntegrityError:
                continue  # a concurrent sign-in created it (or a code collided): look again
        raise RuntimeError("could not create a user for a verified identity")

    async def get(self, user_id: str) -> UserOut:
        user = await User.get_or_none(id=user_id)
        if user is None:
            raise UserNotFoundError("no such user")
        return user_out(user)

    async def me(self, user_id: str) -> MeOut:
        user = await User.get_or_none(id=user_id)
        if user is None:
            raise UserNotFoundError("no such user")
        phones = await Identity.filter(user_id=user_id, kind="phone").values_list(
            "value", flat=True
        )
        return MeOut(**user_out(user).model_dump(), phones=[str(p) for p in phones])

    async def peers(self, user_id: str, *, limit: int = 5000) -> list[str]:
        """Who sees this user come and go: the user and everyone who shares a conversation
        with them, less anyone on either side of a block with them."""
        conversations = Member.filter(user_id=user_id).values_list("conversation_id", flat=True)
        peers = (
            await Member.filter(conversation_id__in=Subquery(conversations))
            .distinct()
            .limit(limit)
            .values_list("user_id", flat=True)
        )
        shared = {str(p) for p in peers}
        return sorted((shared - await _blocks_with(user_id, shared)) | {user_id})

    async def presence_visible(self, viewer_id: str, user_ids: list[str]) -> set[str]:
        """Those of ``user_ids`` whose presence the viewer may see: by the rule of
        :meth:`peers`, seen from the other side."""
        conversations = Member.filter(user_id=viewer_id).values_list("conversation_id", flat=True)
        shared = await (
            Member.filter(conversation_id__in=Subquery(conversations), user_id__in=user_ids)
            .distinct()
            .values_list("user_id", flat=True)
        )
        visible = {str(u) for u in shared}
        return (visible - await _blocks_with(viewer_id, visible)) | ({viewer_id} & set(user_ids))

    async def exists(self, user_id: str) -> bool:
        return await User.exists(id=user_id)
