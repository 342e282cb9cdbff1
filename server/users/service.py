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
from storage.models import Block, Conversation, Identity, Member, Message, User

_CODE_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no 0/o, 1/l look-alikes
_CODE_LENGTH = 12


class UserNotFoundError(NotFoundError):
    code = "user_not_found"


def new_user_code() -> str:
    """Seed 000's stable public ``code``: 12 symbols, 60 random bits."""
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(_CODE_LENGTH))


async def taken_part_in(user_id: str) -> list[str]:
    """The conversations this user took part in: created (a direct one by opening it or
    accepting a chat request) or sent a message in. Being added by someone else, or
    having a direct conversation opened at one, is not taking part."""
    mine = Member.filter(user_id=user_id).values_list("conversation_id", flat=True)
    created = await Conversation.filter(id__in=Subquery(mine), created_by_id=user_id).values_list(
        "id", flat=True
    )
    # (conversation, sender) leads a unique index of messages: a short probe per
    # conversation, not a scan of the user's messages.
    spoke = (
        await Message.filter(conversation_id__in=Subquery(mine), sender_id=user_id)
        .distinct()
        .values_list("conversation_id", flat=True)
    )
    return sorted({str(c) for c in (*created, *spoke)})


async def shares_with(viewer_id: str, others: set[str]) -> set[str]:
    """Those of ``others`` who share with the viewer a conversation they took part in.

    What lets someone see a person's presence and whole profile card: a person
    is seen by the people they chose to talk with, not by whoever opened a
    conversation with them or added them to a group.
    """
    if not others:
        return set()
    viewers = Member.filter(user_id=viewer_id).values_list("conversation_id", flat=True)
    pairs = await Member.filter(
        conversation_id__in=Subquery(viewers), user_id__in=list(others)
    ).values_list("user_id", "conversation_id")
    if not pairs:
        return set()
    conversations = list({str(c) for _, c in pairs})
    people = list({str(u) for u, _ in pairs})
    created = await Conversation.filter(id__in=conversations, created_by_id__in=people).values_list(
        "created_by_id", "id"
    )
    spoke = (
        await Message.filter(conversation_id__in=conversations, sender_id__in=people)
        .distinct()
        .values_list("sender_id", "conversation_id")
    )
    active = {(str(u), str(c)) for u, c in (*created, *spoke)}
    return {str(u) for u, c in pairs if (str(u), str(c)) in active}


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
        """Who sees this user come and go: the user and the members of every conversation
        the user took part in (:func:`taken_part_in`), less either side of a block."""
        peers = (
            await Member.filter(conversation_id__in=await taken_part_in(user_id))
            .distinct()
            .limit(limit)
            .values_list("user_id", flat=True)
        )
        shared = {str(p) for p in peers}
        return sorted((shared - await _blocks_with(user_id, shared)) | {user_id})

    async def presence_visible(self, viewer_id: str, user_ids: list[str]) -> set[str]:
        """Those of ``user_ids`` whose presence the viewer may see: by the rule of
        :meth:`peers`, seen from the other side."""
        visible = await shares_with(viewer_id, set(user_ids) - {viewer_id})
        return (visible - await _blocks_with(viewer_id, visible)) | ({viewer_id} & set(user_ids))

    async def exists(self, user_id: str) -> bool:
        return await User.exists(id=user_id)
